/**
 * Waits until `condition` holds, checking on every turn of the event loop, and fails after `timeoutMs`
 * with `what` in the message. For conditions that have no event to wait on.
 */
export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}
