import { Code, createSocialhubClient, decodeError, pages } from "@socialhub/client";

const { profiles, feed } = createSocialhubClient({
  address: process.env["SOCIALHUB_ADDRESS"] ?? "127.0.0.1:50051",
  apiKey: process.env["SOCIALHUB_KEY"] ?? "",
  timeoutMs: 5_000, // every call's deadline, unless the call sets its own
});

// Every page of a listing: `pages` sends each nextPageToken back until there is none.
for await (const page of pages((pageToken) => profiles.listProfiles({ pageSize: 100, pageToken }))) {
  for (const profile of page.profiles) {
    console.log(profile.name, profile.displayName, profile.totalFollowers); // int64 is a bigint
  }
}

// A server stream: every post of an author, in batches, with a longer deadline.
for await (const batch of feed.streamProfilePosts({ author: "profiles/1" }, { timeoutMs: 60_000 })) {
  console.log(`${batch.posts.length} posts, resume with ${batch.resumeCursor}`);
}

// Errors carry google.rpc details: an ErrorInfo with a stable reason, a BadRequest per bad field.
try {
  await profiles.getProfile({ name: "profiles/9223372036854775807" });
} catch (error) {
  const { code, errorInfo, requestInfo } = decodeError(error);
  if (code !== Code.NotFound) {
    throw error;
  }
  console.log(`not found: ${errorInfo?.reason} (request ${requestInfo?.requestId})`);
}
