// The Socialhub API for Node: the messages and services of socialhub.v1 (generated into gen/ by
// `make generate`), typed clients on Connect's gRPC transport, a page walker, and the decoding
// of the google.rpc details every error carries.
export * from "./gen/socialhub/v1/profile_pb.js";
export * from "./gen/socialhub/v1/feed_pb.js";
export * from "./gen/google/rpc/error_details_pb.js";
export {
  createSocialhubClient,
  createSocialhubTransport,
  type SocialhubClient,
  type SocialhubClientOptions,
} from "./client.js";
export { decodeError, type DecodedError } from "./errors.js";
export { pages } from "./pages.js";
export { Code, ConnectError } from "@connectrpc/connect";
