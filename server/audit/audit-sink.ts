import type { FileHandle } from "node:fs/promises";
import { mkdir, open, stat } from "node:fs/promises";
import { dirname } from "node:path";

/** Options of `createAuditSink`. */
export interface AuditSinkOptions {
  /** A file path (appended to; its directory is created), or undefined for stdout. */
  path?: string;
  /** Wait after a failed write before the next attempt. @default 1000 */
  retryMs?: number;
  /** A write failed (e.g. ENOSPC); lines stay queued and are retried. */
  onWriteError?: (err: Error) => void;
  /** Writes succeed again after a failure. */
  onRecovered?: () => void;
  /** The file was reopened: renamed or deleted (log rotation), or `reopen()` asked for it. */
  onReopened?: (reason: string) => void;
}

/** What the sink knows of the last line written in full. */
export interface WrittenMark {
  seq: number;
  hash: string;
}

/**
 * An appending writer of audit lines that never loses a queued line: lines are written in order, in
 * batches, off the caller's path. A failed write (a full disk, a vanished mount) keeps the lines queued
 * (a partly written batch resumes where it stopped) and is retried every `retryMs` until it succeeds.
 * Before each batch the file's inode is compared with the path's: after a rename or delete (log
 * rotation) the path is reopened, so lines never go silently into a file nobody can read.
 */
export interface AuditSink {
  /** Opens the file; rejects when it cannot be opened. */
  open(): Promise<void>;
  /** Queues a line (with its newline) and the chain mark it carries. */
  append(text: string, mark: WrittenMark): void;
  /** Why the last write failed, or undefined when writes succeed. */
  failure(): string | undefined;
  /** Lines queued and not yet written. */
  backlog(): number;
  /** The last line written in full, or undefined before the first. */
  written(): WrittenMark | undefined;
  /** Reopens the path before the next batch (SIGHUP after rotation). */
  reopen(): void;
  /** Resolves when the queue is empty, or when a write failed (then with the reason). */
  drain(): Promise<string | undefined>;
  /** Drains, then closes the file (never stdout). Resolves with the reason when lines stayed unwritten. */
  close(): Promise<string | undefined>;
}

interface Queued {
  bytes: Buffer;
  mark: WrittenMark;
}

/** Largest batch written at once. */
const maxBatchBytes = 1 << 20;

/** Creates the sink; nothing is opened before `open()`. */
export function createAuditSink(options: AuditSinkOptions): AuditSink {
  const { path } = options;
  const retryMs = options.retryMs ?? 1000;
  const queue: Queued[] = [];
  /** Bytes of `queue[0]` already written (a partial write). */
  let offset = 0;
  let handle: FileHandle | undefined;
  let inode: { dev: number; ino: number } | undefined;
  let reopenAsked = false;
  let failing: Error | undefined;
  let written: WrittenMark | undefined;
  let running: Promise<void> | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let closed = false;
  const waiters: (() => void)[] = [];

  let opening: Promise<void> | undefined;

  async function openPath(file: string): Promise<void> {
    await mkdir(dirname(file), { recursive: true });
    const opened = await open(file, "a");
    const s = await opened.stat();
    inode = { dev: s.dev, ino: s.ino };
    handle = opened;
  }

  /** Opens the path once, however many callers ask at the same time; a failed open is tried again. */
  function ensureOpen(file: string): Promise<void> {
    opening ??= openPath(file).finally(() => {
      opening = undefined;
    });
    return opening;
  }

  /** Reopens the path when it no longer names the open file (or a reopen was asked for). */
  async function checkRotation(file: string): Promise<void> {
    if (handle !== undefined) {
      const current = await stat(file).catch(() => undefined);
      let reason: string | undefined;
      if (reopenAsked) reason = "reopen requested";
      else if (current === undefined) reason = "the file was deleted or renamed";
      else if (current.ino !== inode?.ino || current.dev !== inode?.dev) reason = "the file was replaced";
      if (reason === undefined) return;
      reopenAsked = false;
      const old = handle;
      handle = undefined;
      await old.close().catch(() => undefined);
      await ensureOpen(file);
      options.onReopened?.(reason);
      return;
    }
    await ensureOpen(file);
  }

  async function writeBatch(): Promise<void> {
    const parts: Buffer[] = [];
    let size = 0;
    for (const item of queue) {
      const bytes = parts.length === 0 ? item.bytes.subarray(offset) : item.bytes;
      if (parts.length > 0 && size + bytes.length > maxBatchBytes) break;
      parts.push(bytes);
      size += bytes.length;
    }
    const batch = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size);
    let done: number;
    if (path === undefined) {
      await new Promise<void>((resolve, reject) =>
        process.stdout.write(batch, (err) => (err ? reject(err) : resolve())),
      );
      done = batch.length;
    } else {
      await checkRotation(path);
      done = (await (handle as FileHandle).write(batch)).bytesWritten;
    }
    // Drop what was written in full; keep the offset into a line written in part.
    let left = done + offset;
    offset = 0;
    while (queue.length > 0 && left >= (queue[0] as Queued).bytes.length) {
      const item = queue.shift() as Queued;
      left -= item.bytes.length;
      written = item.mark;
    }
    offset = left;
  }

  function wake(): void {
    for (const w of waiters.splice(0)) w();
  }

  async function run(): Promise<void> {
    while (queue.length > 0) {
      try {
        await writeBatch();
      } catch (err) {
        failing = err as Error;
        options.onWriteError?.(failing);
        retryTimer = setTimeout(() => {
          retryTimer = undefined;
          kick();
        }, retryMs);
        retryTimer.unref();
        wake();
        return;
      }
      if (failing !== undefined) {
        failing = undefined;
        options.onRecovered?.();
      }
    }
    wake();
  }

  function kick(): void {
    if (running !== undefined || retryTimer !== undefined) return;
    running = run().finally(() => {
      running = undefined;
      // Lines queued while a batch was being written, or a drain that asked for an attempt now while
      // this run was ending (it cleared the retry timer).
      if (queue.length > 0 && retryTimer === undefined && (failing === undefined || waiters.length > 0))
        kick();
    });
  }

  async function drain(): Promise<string | undefined> {
    if (queue.length === 0) return undefined;
    if (failing !== undefined && retryTimer !== undefined) {
      // Try once more now rather than wait for the timer.
      clearTimeout(retryTimer);
      retryTimer = undefined;
    }
    const done = new Promise<void>((resolve) => waiters.push(resolve));
    kick();
    await done;
    if (queue.length === 0) return undefined;
    return failing?.message ?? "not written";
  }

  return {
    async open() {
      if (path !== undefined && handle === undefined) await ensureOpen(path);
    },
    append(text, mark) {
      if (closed) return;
      queue.push({ bytes: Buffer.from(text), mark });
      kick();
    },
    failure: () => failing?.message,
    backlog: () => queue.length,
    written: () => written,
    reopen() {
      reopenAsked = true;
    },
    drain,
    async close() {
      const lost = await drain();
      closed = true;
      if (retryTimer !== undefined) clearTimeout(retryTimer);
      retryTimer = undefined;
      await running;
      await handle?.close().catch(() => undefined);
      handle = undefined;
      return lost;
    },
  };
}
