import { mkdir, open, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Approval } from "../domain/types.js";
import { archiveFileName, toArchiveLine } from "./archive-record.js";

/** Appends finished approvals to the JSONL archive. */
export interface ArchiveWriter {
  /**
   * Appends one line per approval to the file of the UTC day of `archiveTime` and resolves only once
   * the lines are on disk (fsync of the file, and of the directory when the file is new), so the
   * approvals may then be purged.
   * @returns the file written
   */
  append(approvals: Approval[], archiveTime: number): Promise<string>;
}

/** An archive writer into `dir` (created when missing). */
export function createArchiveWriter(options: { dir: string }): ArchiveWriter {
  const { dir } = options;
  return {
    async append(approvals, archiveTime) {
      const path = join(dir, archiveFileName(archiveTime));
      if (approvals.length === 0) return path;
      await mkdir(dir, { recursive: true });
      const isNew = await stat(path).then(
        () => false,
        () => true,
      );
      const text = `${approvals.map((a) => toArchiveLine(a, archiveTime)).join("\n")}\n`;
      const file = await open(path, "a", 0o640);
      try {
        await file.writeFile(text);
        await file.sync();
      } finally {
        await file.close();
      }
      if (isNew) {
        const directory = await open(dir, "r");
        try {
          await directory.sync();
        } finally {
          await directory.close();
        }
      }
      return path;
    },
  };
}
