import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { SecureClientSessionOptions } from "node:http2";

import { FeedService } from "./gen/socialhub/v1/feed_pb.js";
import { ProfileService } from "./gen/socialhub/v1/profile_pb.js";

/** How to reach a Socialhub server. */
export interface SocialhubClientOptions {
  /**
   * Where the server listens: "host:port" (plaintext, or TLS when `tls` is given), or a URL,
   * "http://host:port" or "https://host:port".
   */
  address: string;
  /** An API key, `sh_<prefix>_<secret>`, sent as `authorization: Bearer <key>` with every call. */
  apiKey: string;
  /**
   * TLS: the CA that signed the server's certificate when it is not a public one, and a client
   * certificate and key for mTLS. Given, a "host:port" address is reached over https.
   */
  tls?: Pick<SecureClientSessionOptions, "ca" | "cert" | "key" | "servername">;
  /**
   * Deadline of every call, in milliseconds, unless the call passes its own `timeoutMs`.
   * Unset, calls have none: set one for unary calls, and a longer one (or none) per stream.
   */
  timeoutMs?: number;
  /** More interceptors, run inside the one that adds the API key. */
  interceptors?: Interceptor[];
}

/** One typed client per Socialhub service, over one HTTP/2 connection. */
export interface SocialhubClient {
  profiles: Client<typeof ProfileService>;
  feed: Client<typeof FeedService>;
  transport: Transport;
}

/** The gRPC transport (HTTP/2, binary protobuf) to a Socialhub server, with the API key. */
export function createSocialhubTransport(options: SocialhubClientOptions): Transport {
  const authorization = `Bearer ${options.apiKey}`;
  const authenticate: Interceptor = (next) => (request) => {
    request.header.set("authorization", authorization);
    return next(request);
  };
  return createGrpcTransport({
    baseUrl: baseUrl(options.address, options.tls !== undefined),
    interceptors: [authenticate, ...(options.interceptors ?? [])],
    ...(options.tls === undefined ? {} : { nodeOptions: options.tls }),
    ...(options.timeoutMs === undefined ? {} : { defaultTimeoutMs: options.timeoutMs }),
  });
}

/** Clients of every Socialhub service, sharing one transport. */
export function createSocialhubClient(options: SocialhubClientOptions): SocialhubClient {
  const transport = createSocialhubTransport(options);
  return {
    profiles: createClient(ProfileService, transport),
    feed: createClient(FeedService, transport),
    transport,
  };
}

function baseUrl(address: string, tls: boolean): string {
  if (/^https?:\/\//.test(address)) {
    return address;
  }
  return `${tls ? "https" : "http"}://${address}`;
}
