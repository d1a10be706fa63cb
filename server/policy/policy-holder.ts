/**
 * Holds the policy set in force and replaces it on reload (admin RPC, SIGHUP, optional file watch) or when
 * another replica published a set (`adopt`, see policy-sync.ts). A reload that fails validation keeps
 * the old set and reports every problem (SPEC C3).
 */
import { type FSWatcher, watch as watchFs } from "node:fs";
import { basename, dirname } from "node:path";
import { type Clock, systemClock } from "../domain/clock.js";
import type { JsonObject, PolicySet } from "../domain/types.js";
import {
  type PolicyDocumentResult,
  PolicyLoadError,
  parsePolicyDocument,
  readPolicyText,
} from "./policy-loader.js";

/** A compiled policy set and where it came from. */
export interface LoadedPolicies {
  policySet: PolicySet;
  /** The file's JSON form, as parsed. */
  document: JsonObject;
  /** SHA-256 of the canonical JSON of `document`; equals `policySet.sha256`. */
  sha256: string;
  /** The document's text (YAML or JSON), as read. */
  text: string;
  /** Path of the file, or for a set adopted from another replica, where it came from. */
  source: string;
  /** When it was loaded, epoch milliseconds. */
  loadTime: number;
}

/** What started a (re)load: `sync` is a set another replica published (`adopt`). */
export type PolicyReloadTrigger = "load" | "reload" | "watch" | "sync";

/** Reported after every load or reload that is not a dry run. */
export type PolicyReloadEvent =
  | {
      /** A new policy set is in force. */
      outcome: "applied";
      trigger: PolicyReloadTrigger;
      /** Hash of the set it replaced; `undefined` on the first load. */
      previousSha256: string | undefined;
      current: LoadedPolicies;
    }
  | {
      /** The file is valid and identical to the set in force, which stays. */
      outcome: "unchanged";
      trigger: PolicyReloadTrigger;
      current: LoadedPolicies;
    }
  | {
      /** The file is invalid; the set in force (if any) stays. */
      outcome: "rejected";
      trigger: PolicyReloadTrigger;
      error: PolicyLoadError;
      current: LoadedPolicies | undefined;
    };

/** Options of `createPolicyHolder`. */
export interface PolicyHolderOptions {
  /** Path of the policy file (YAML or JSON). */
  path: string;
  /** Called after every load and reload that is not a dry run, including rejected ones. */
  onReload?: (event: PolicyReloadEvent) => void;
  /** Called when the file watcher itself fails (e.g. the directory is removed). */
  onWatchError?: (error: Error) => void;
  /**
   * Quiet time after the last file change before `watch()` reloads; editors write a file in several steps.
   * @default 100
   */
  debounceMs?: number;
  /** Source of `loadTime`. @default systemClock */
  clock?: Clock;
  /**
   * Parses, validates and compiles a document. @default parsePolicyDocument (tests: one that refuses
   * what an older release would refuse)
   */
  parse?: (text: string) => PolicyDocumentResult;
}

/** Outcome of `reload()`. */
export interface PolicyReloadResult {
  /** The candidate is in force: true for every successful reload but a dry run. */
  applied: boolean;
  /** The candidate differs from the set that was in force. */
  changed: boolean;
  candidateSha256: string;
  /** Number of policies in the candidate. */
  policyCount: number;
  /** The set in force after the call. */
  current: LoadedPolicies;
}

/** The policy set in force, and the means to replace it. */
export interface PolicyHolder {
  /** The set in force; `undefined` before the first successful `load()`. */
  current(): LoadedPolicies | undefined;
  /**
   * Loads the file for the first time (or again, like a reload).
   * @throws PolicyLoadError when the file cannot be read or is invalid.
   */
  load(): Promise<LoadedPolicies>;
  /**
   * Reads and validates the file again and, unless `dryRun`, puts it in force. A failed reload keeps the
   * set in force. Reloads run one at a time, in call order.
   * @throws PolicyLoadError when the file cannot be read or is invalid.
   * @throws Error for a dry run before anything was loaded.
   */
  reload(options?: { dryRun?: boolean }): Promise<PolicyReloadResult>;
  /**
   * Puts a document received from elsewhere (another replica, through the shared store) in force, with
   * the same validation as a reload, in turn with reloads. `source` says where it came from.
   * @throws PolicyLoadError when the document is invalid here; the set in force stays.
   */
  adopt(text: string, source: string): Promise<PolicyReloadResult>;
  /** Reloads whenever the file changes (debounced); results go to `onReload`. Idempotent. */
  watch(): void;
  /** Stops watching and waits for a reload in progress. */
  close(): Promise<void>;
}

/**
 * Creates a holder for the policy file at `options.path`. Nothing is read until `load()`.
 */
export function createPolicyHolder(options: PolicyHolderOptions): PolicyHolder {
  const { path, onReload, onWatchError } = options;
  const clock = options.clock ?? systemClock;
  const debounceMs = options.debounceMs ?? 100;
  const parse = options.parse ?? parsePolicyDocument;
  let loaded: LoadedPolicies | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  let watcher: FSWatcher | undefined;
  let timer: NodeJS.Timeout | undefined;

  const emit = (event: PolicyReloadEvent): void => {
    try {
      onReload?.(event);
    } catch {
      // A listener's failure must not change which policies are in force.
    }
  };

  /** Runs reloads one at a time, so that an older read never replaces a newer one. */
  const serialized = <T>(task: () => Promise<T>): Promise<T> => {
    const run = queue.then(task, task);
    queue = run.catch(() => undefined);
    return run;
  };

  /** Reads the file, or takes `adopted`'s text, and parses it. */
  const read = async (
    adopted: { text: string; source: string } | undefined,
  ): Promise<{ source: string; text: string; result: PolicyDocumentResult }> => {
    if (adopted !== undefined) return { ...adopted, result: parse(adopted.text) };
    const file = await readPolicyText(path);
    if (!file.ok) return { source: path, text: "", result: file };
    return { source: path, text: file.text, result: parse(file.text) };
  };

  const attempt = (
    trigger: PolicyReloadTrigger,
    dryRun: boolean,
    adopted?: { text: string; source: string },
  ): Promise<PolicyReloadResult> =>
    serialized(async () => {
      if (dryRun && loaded === undefined)
        throw new Error("no policies are loaded yet; nothing to compare with");
      const { source, text, result } = await read(adopted);
      if (!result.ok) {
        const error = new PolicyLoadError(result.problems, source);
        if (!dryRun) emit({ outcome: "rejected", trigger, error, current: loaded });
        throw error;
      }
      const previous = loaded;
      const changed = previous?.sha256 !== result.sha256;
      const outcome = (applied: boolean, current: LoadedPolicies): PolicyReloadResult => ({
        applied,
        changed,
        candidateSha256: result.sha256,
        policyCount: result.policySet.policies.length,
        current,
      });
      if (previous !== undefined && dryRun) return outcome(false, previous);
      if (previous !== undefined && !changed) {
        emit({ outcome: "unchanged", trigger, current: previous });
        return outcome(true, previous);
      }
      loaded = {
        policySet: result.policySet,
        document: result.document,
        sha256: result.sha256,
        text,
        source,
        loadTime: clock.now(),
      };
      emit({ outcome: "applied", trigger, previousSha256: previous?.sha256, current: loaded });
      return outcome(true, loaded);
    });

  const scheduleReload = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      // Rejections are reported through onReload.
      attempt("watch", false).catch(() => undefined);
    }, debounceMs);
  };

  return {
    current: () => loaded,
    load: async () => (await attempt("load", false)).current,
    reload: (reloadOptions) => attempt("reload", reloadOptions?.dryRun ?? false),
    adopt: (text, source) => attempt("sync", false, { text, source }),
    watch() {
      if (watcher !== undefined) return;
      const file = basename(path);
      // Watch the directory, not the file: editors and config managers replace the file by renaming.
      watcher = watchFs(dirname(path), { persistent: false }, (_event, filename) => {
        if (filename === null || filename === file) scheduleReload();
      });
      watcher.on("error", (error) => {
        onWatchError?.(error);
      });
    },
    async close() {
      watcher?.close();
      watcher = undefined;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      await queue;
    },
  };
}

/**
 * A holder of a fixed policy document, for tests and tools: already loaded, never changes; `watch()` does
 * nothing.
 * @throws PolicyLoadError when `text` is invalid.
 */
export function createStaticPolicyHolder(text: string, options: { clock?: Clock } = {}): PolicyHolder {
  const result = parsePolicyDocument(text);
  if (!result.ok) throw new PolicyLoadError(result.problems, "(static)");
  const loaded: LoadedPolicies = {
    policySet: result.policySet,
    document: result.document,
    sha256: result.sha256,
    text,
    source: "(static)",
    loadTime: (options.clock ?? systemClock).now(),
  };
  const unchanged = (applied: boolean): Promise<PolicyReloadResult> =>
    Promise.resolve({
      applied,
      changed: false,
      candidateSha256: loaded.sha256,
      policyCount: loaded.policySet.policies.length,
      current: loaded,
    });
  return {
    current: () => loaded,
    load: () => Promise.resolve(loaded),
    reload: (reloadOptions) => unchanged(!(reloadOptions?.dryRun ?? false)),
    adopt: (adoptedText) => {
      const adopted = parsePolicyDocument(adoptedText);
      if (adopted.ok && adopted.sha256 === loaded.sha256) return unchanged(true);
      return Promise.reject(new Error("a static policy holder never changes its policies"));
    },
    watch: () => undefined,
    close: () => Promise.resolve(),
  };
}
