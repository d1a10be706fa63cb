import { type FSWatcher, watch } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { createSecureContext, type SecureContextOptions } from "node:tls";
import type { experimental } from "@grpc/grpc-js";

/** Paths of the server's TLS material. */
export interface TlsFiles {
  cert: string;
  key: string;
  /** CA that client certificates must chain to; enables client certificates. */
  clientCa?: string;
  /** Refuse clients without a valid certificate. */
  requireClientCert: boolean;
}

interface Material {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

type IdentityListener = experimental.IdentityCertificateUpdateListener;
type CaListener = experimental.CaCertificateUpdateListener;

/**
 * The server's certificate, key and client CA, read from disk, shared by both transports. `reload()`
 * re-reads the files; new handshakes use them, open connections continue. It doubles as the grpc-js
 * certificate provider.
 */
export class TlsMaterial implements experimental.CertificateProvider {
  private material: Material | undefined;
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly caListeners = new Set<CaListener>();
  private readonly contextListeners = new Set<(options: SecureContextOptions) => void>();

  constructor(readonly files: TlsFiles) {}

  private watchers: FSWatcher[] = [];
  private debounce: NodeJS.Timeout | undefined;

  /**
   * Reads the files and, when they form a usable certificate/key/CA set, makes them the material of
   * every new handshake. A set that cannot be used (unreadable, or a key that does not match the
   * certificate, e.g. half-way through a rotation) throws and keeps the current material.
   */
  async load(): Promise<void> {
    const read = async (path: string, what: string) => {
      try {
        return await readFile(path);
      } catch (err) {
        throw new Error(`cannot read TLS ${what} ${path}: ${(err as Error).message}`);
      }
    };
    const [cert, key, ca] = await Promise.all([
      read(this.files.cert, "certificate"),
      read(this.files.key, "key"),
      this.files.clientCa === undefined ? undefined : read(this.files.clientCa, "client CA"),
    ]);
    const material: Material = ca === undefined ? { cert, key } : { cert, key, ca };
    try {
      createSecureContext(material);
    } catch (err) {
      throw new Error(
        `TLS files ${this.files.cert} / ${this.files.key} cannot be used: ${(err as Error).message}`,
      );
    }
    this.material = material;
    this.notify();
  }

  /**
   * Reloads the material whenever one of the files changes (debounced, so a rotation that writes
   * several files is picked up once it is complete). Errors go to `onError`; the current material stays.
   */
  watch(onError: (err: unknown) => void, onReloaded?: () => void, debounceMs = 200): void {
    if (this.watchers.length > 0) return;
    const paths = [this.files.cert, this.files.key, this.files.clientCa].filter(
      (p): p is string => p !== undefined,
    );
    const names = new Set(paths.map((p) => p.slice(dirname(p).length + 1)));
    for (const dir of new Set(paths.map((p) => dirname(p)))) {
      const watcher = watch(dir, (_event, file) => {
        if (file !== null && !names.has(file.toString())) return;
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => {
          this.load().then(() => onReloaded?.(), onError);
        }, debounceMs);
      });
      watcher.on("error", onError);
      this.watchers.push(watcher);
    }
  }

  /** Stops watching the files. */
  close(): void {
    clearTimeout(this.debounce);
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }

  /** Options for `https`/`http2.createSecureServer` and `setSecureContext`. */
  secureContextOptions(): SecureContextOptions {
    const m = this.required();
    return m.ca === undefined ? { cert: m.cert, key: m.key } : { cert: m.cert, key: m.key, ca: m.ca };
  }

  /** Calls `listener` with new options after every reload. */
  onReload(listener: (options: SecureContextOptions) => void): () => void {
    this.contextListeners.add(listener);
    return () => this.contextListeners.delete(listener);
  }

  // grpc-js registers its own watcher only after adding these listeners, so the current material is
  // delivered asynchronously, as a file-watching provider would.
  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    const m = this.material;
    if (m) queueMicrotask(() => listener({ certificate: m.cert, privateKey: m.key }));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    const ca = this.material?.ca;
    if (ca) queueMicrotask(() => listener({ caCertificate: ca }));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  private required(): Material {
    if (this.material === undefined) throw new Error("TLS material is not loaded");
    return this.material;
  }

  private notify(): void {
    const m = this.required();
    for (const l of this.identityListeners) l({ certificate: m.cert, privateKey: m.key });
    if (m.ca) for (const l of this.caListeners) l({ caCertificate: m.ca });
    const options = this.secureContextOptions();
    for (const l of this.contextListeners) l(options);
  }
}
