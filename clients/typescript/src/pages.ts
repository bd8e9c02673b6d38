/**
 * Every page of a List or Search method, first to last: `fetchPage` is called with the page
 * token to send ("" for the first page) until a response has no `nextPageToken`.
 *
 * ```ts
 * for await (const page of pages((pageToken) => profiles.listProfiles({ pageSize: 100, pageToken }))) { ... }
 * ```
 *
 * A page token is only valid with the request fields it was issued for, so the callback must
 * send the same filter and order on every call.
 */
export async function* pages<Page extends { nextPageToken: string }>(
  fetchPage: (pageToken: string) => Promise<Page>,
): AsyncGenerator<Page, void, undefined> {
  let pageToken = "";
  do {
    const page = await fetchPage(pageToken);
    yield page;
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
}
