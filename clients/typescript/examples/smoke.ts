// Smoke test of the TypeScript client against a running server (tests/clients runs it against
// the test server and compares its output with what the Python stubs see):
//
//   npx tsx examples/smoke.ts --address 127.0.0.1:50051 --api-key "$SOCIALHUB_KEY"
//
// (--ca ca.pem: over TLS, trusting that CA.)
//
// It lists every page of the profiles, gets the first one, streams that profile's posts, and
// decodes the details of two errors (NOT_FOUND and INVALID_ARGUMENT). It prints one JSON
// object: the responses in the proto3 JSON mapping, and each error's code and details.
import { createRegistry, toJson, type JsonValue, type Message } from "@bufbuild/protobuf";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import {
  Code,
  createSocialhubClient,
  decodeError,
  file_google_rpc_error_details,
  file_socialhub_v1_feed,
  file_socialhub_v1_profile,
  pages,
  type SocialhubClient,
} from "@socialhub/client";

// The RPCs this script calls, and the only place that names them: the contract is still being
// settled, and a renamed RPC or field fails `tsc` here and nowhere else.
function calls(client: SocialhubClient, pageSize: number, batchSize: number) {
  return {
    listPage: (pageToken: string) => client.profiles.listProfiles({ pageSize, pageToken }),
    get: (name: string) => client.profiles.getProfile({ name }),
    stream: (author: string) => client.feed.streamProfilePosts({ author, batchSize }),
    // A page size below zero is INVALID_ARGUMENT, with a BadRequest violation of its field.
    invalid: (requestId: string) =>
      client.profiles.listProfiles({ pageSize: -1 }, { headers: { "x-request-id": requestId } }),
    notFound: (name: string, requestId: string) =>
      client.profiles.getProfile({ name }, { headers: { "x-request-id": requestId } }),
  };
}

// Every message type a response or error detail may hold, for the JSON mapping.
const registry = createRegistry(
  file_socialhub_v1_profile,
  file_socialhub_v1_feed,
  file_google_rpc_error_details,
);

function json(message: Message): JsonValue {
  const schema = registry.getMessage(message.$typeName);
  if (schema === undefined) {
    throw new Error(`no schema for ${message.$typeName}`);
  }
  return toJson(schema, message, { registry });
}

function optionalJson(message: Message | undefined): JsonValue {
  return message === undefined ? null : json(message);
}

async function errorOf(call: () => Promise<unknown>): Promise<JsonValue> {
  try {
    await call();
  } catch (error) {
    const decoded = decodeError(error);
    return {
      code: decoded.code,
      codeName: Code[decoded.code],
      message: decoded.message,
      errorInfo: optionalJson(decoded.errorInfo),
      badRequest: optionalJson(decoded.badRequest),
      requestInfo: optionalJson(decoded.requestInfo),
    };
  }
  throw new Error("the call succeeded; it was meant to fail");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      address: { type: "string", default: "127.0.0.1:50051" },
      "api-key": { type: "string", default: process.env["SOCIALHUB_KEY"] ?? "" },
      "page-size": { type: "string", default: "50" },
      "batch-size": { type: "string", default: "100" },
      // The largest id a name can hold: a valid name that no profile has.
      missing: { type: "string", default: "profiles/9223372036854775807" },
      "timeout-ms": { type: "string", default: "10000" },
      ca: { type: "string" },
    },
    strict: true,
  });
  if (values["api-key"] === "") {
    throw new Error("pass --api-key or set SOCIALHUB_KEY");
  }
  const client = createSocialhubClient({
    address: values.address,
    apiKey: values["api-key"],
    timeoutMs: Number(values["timeout-ms"]),
    ...(values.ca === undefined ? {} : { tls: { ca: readFileSync(values.ca) } }),
  });
  const rpc = calls(client, Number(values["page-size"]), Number(values["batch-size"]));

  const listed: JsonValue[] = [];
  let first: string | undefined;
  for await (const page of pages(rpc.listPage)) {
    listed.push(json(page));
    first ??= page.profiles[0]?.name;
  }
  if (first === undefined) {
    throw new Error("no profiles to get");
  }
  const profile = await rpc.get(first);
  const streamed: JsonValue[] = [];
  for await (const batch of rpc.stream(profile.name)) {
    streamed.push(json(batch));
  }
  const result = {
    pages: listed,
    profile: json(profile),
    stream: streamed,
    errors: {
      notFound: await errorOf(() => rpc.notFound(values.missing, "smoke-not-found")),
      invalidArgument: await errorOf(() => rpc.invalid("smoke-invalid-argument")),
    },
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

await main();
