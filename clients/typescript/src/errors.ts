import { Code, ConnectError } from "@connectrpc/connect";

import {
  BadRequestSchema,
  ErrorInfoSchema,
  RequestInfoSchema,
  RetryInfoSchema,
  type BadRequest,
  type ErrorInfo,
  type RequestInfo,
  type RetryInfo,
} from "./gen/google/rpc/error_details_pb.js";

/** The google.rpc details of a failed call, as Socialhub sends them. */
export interface DecodedError {
  /** The status code; Connect's `Code` numbers are gRPC's (`Code.NotFound` is 5). */
  code: Code;
  /** The server's message, without Connect's "[not_found]" prefix. */
  message: string;
  /** Every Socialhub error has one: `reason` is stable (docs/API.md lists them all). */
  errorInfo: ErrorInfo | undefined;
  /** INVALID_ARGUMENT: one violation per bad field. */
  badRequest: BadRequest | undefined;
  /** The request id, also in the server's log line for the call. */
  requestInfo: RequestInfo | undefined;
  /** RESOURCE_EXHAUSTED, UNAVAILABLE and ABORTED: how long to wait before a retry. */
  retryInfo: RetryInfo | undefined;
}

/** Decodes the details of any error a Socialhub call threw (non-Connect errors are `Unknown`). */
export function decodeError(error: unknown): DecodedError {
  const connectError = ConnectError.from(error);
  return {
    code: connectError.code,
    message: connectError.rawMessage,
    errorInfo: connectError.findDetails(ErrorInfoSchema)[0],
    badRequest: connectError.findDetails(BadRequestSchema)[0],
    requestInfo: connectError.findDetails(RequestInfoSchema)[0],
    retryInfo: connectError.findDetails(RetryInfoSchema)[0],
  };
}
