import type {
  DescMessage,
  DescMethodStreaming,
  DescMethodUnary,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import type {
  ContextValues,
  Interceptor,
  StreamResponse,
  Transport,
  UnaryResponse,
} from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { toCountersignError } from "./errors.js";
import { AdminService } from "./gen/countersign/v1/admin_service_pb.js";

type HeadersInit = ConstructorParameters<typeof Headers>[0];

/** The wire protocols the server speaks. */
export type Protocol = "grpc" | "connect" | "grpc-web";

/** The protocols, for checking input. */
export const protocols: readonly Protocol[] = ["grpc", "connect", "grpc-web"];

/** TLS settings of a client: PEM text or bytes. */
export interface TlsOptions {
  /** CA certificates that sign the server's certificate. @default Node's bundled root CAs */
  ca?: string | Uint8Array;
  /** The client certificate, for mutual TLS: its identity is the caller. */
  cert?: string | Uint8Array;
  /** The private key of `cert`. */
  key?: string | Uint8Array;
  /** The name to check the server's certificate against. @default the host of `baseUrl` */
  serverName?: string;
}

/** How to reach the server. */
export interface TransportOptions {
  /**
   * The server's URL: `https://host:port` with TLS, `http://127.0.0.1:port` for the development server.
   * For `grpc`, the gRPC port; for `connect` and `grpc-web`, the Connect port.
   */
  baseUrl: string;
  /** The wire protocol. @default "connect" */
  protocol?: Protocol;
  /** TLS and mutual TLS settings; needs an `https://` URL. */
  tls?: TlsOptions;
  /**
   * HTTP version for `connect` and `grpc-web` (`grpc` is always HTTP/2).
   * @default "2" for https, "1.1" for http (the development server speaks HTTP/1.1 in plaintext)
   */
  httpVersion?: "1.1" | "2";
  /** Connect interceptors, run on every call. */
  interceptors?: Interceptor[];
}

/** What every call gets, on any transport. */
export interface CallDefaults {
  /** Headers sent with every call (a call's own headers win). */
  headers?: Record<string, string>;
  /** Sent as `authorization: Bearer <token>` on AdminService calls only. */
  adminToken?: string;
  /** Deadline of unary calls that set none; 0 or undefined: none. Streams never get one by default. */
  timeoutMs?: number;
  /** The server's URL, named in connection errors. */
  target: string;
}

/** Keep-alive pings on HTTP/2, so a connection that died silently is noticed while a caller waits. */
const http2KeepAlive = { pingIntervalMs: 30_000, pingTimeoutMs: 15_000 };

/**
 * Creates the connect-node transport for a protocol, with TLS.
 * @throws TypeError for a URL that is not http(s), an unknown protocol, or TLS settings on an http URL
 */
export function createNodeTransport(options: TransportOptions): Transport {
  let url: URL;
  try {
    url = new URL(options.baseUrl);
  } catch {
    throw new TypeError(
      `baseUrl ${JSON.stringify(options.baseUrl)} is not a URL (e.g. https://countersign:8443)`,
    );
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new TypeError(`baseUrl ${JSON.stringify(options.baseUrl)} must start with https:// or http://`);
  const protocol = options.protocol ?? "connect";
  if (!protocols.includes(protocol))
    throw new TypeError(`protocol ${JSON.stringify(protocol)} is not one of ${protocols.join(", ")}`);
  const secure = url.protocol === "https:";
  const tls = options.tls;
  if (tls !== undefined && !secure && (tls.ca ?? tls.cert ?? tls.key) !== undefined)
    throw new TypeError(`TLS settings need an https:// baseUrl, not ${options.baseUrl}`);
  if ((tls?.cert === undefined) !== (tls?.key === undefined))
    throw new TypeError("tls.cert and tls.key must be given together");

  const nodeOptions = {
    ...(tls?.ca === undefined ? {} : { ca: pem(tls.ca) }),
    ...(tls?.cert === undefined ? {} : { cert: pem(tls.cert) }),
    ...(tls?.key === undefined ? {} : { key: pem(tls.key) }),
    ...(tls?.serverName === undefined ? {} : { servername: tls.serverName }),
  };
  const common = {
    baseUrl: options.baseUrl,
    interceptors: options.interceptors ?? [],
    useBinaryFormat: true,
  };
  if (protocol === "grpc") return createGrpcTransport({ ...common, ...http2KeepAlive, nodeOptions });
  const create = protocol === "connect" ? createConnectTransport : createGrpcWebTransport;
  const httpVersion = options.httpVersion ?? (secure ? "2" : "1.1");
  return httpVersion === "2"
    ? create({ ...common, ...http2KeepAlive, httpVersion, nodeOptions })
    : create({ ...common, httpVersion, nodeOptions });
}

function pem(value: string | Uint8Array): string | Buffer {
  return typeof value === "string" ? value : Buffer.from(value);
}

/**
 * Wraps a transport so that every call, from the helpers and from the raw clients alike, gets the default
 * headers, the admin token on AdminService calls, the default deadline on unary calls, and throws typed
 * SDK errors.
 */
export function withCallDefaults(inner: Transport, defaults: CallDefaults): Transport {
  const headersFor = (service: string, header: HeadersInit | undefined): Headers => {
    const merged = new Headers(header);
    for (const [key, value] of Object.entries(defaults.headers ?? {})) {
      if (!merged.has(key)) merged.set(key, value);
    }
    if (
      defaults.adminToken !== undefined &&
      service === AdminService.typeName &&
      !merged.has("authorization")
    )
      merged.set("authorization", `Bearer ${defaults.adminToken}`);
    return merged;
  };
  const fail = (err: unknown, signal: AbortSignal | undefined): never => {
    throw toCountersignError(err, { target: defaults.target, signal });
  };

  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      try {
        return await inner.unary(
          method,
          signal,
          timeoutMs ?? defaults.timeoutMs,
          headersFor(method.parent.typeName, header),
          input,
          contextValues,
        );
      } catch (err) {
        return fail(err, signal);
      }
    },

    async stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ): Promise<StreamResponse<I, O>> {
      let response: StreamResponse<I, O>;
      try {
        response = await inner.stream(
          method,
          signal,
          timeoutMs,
          headersFor(method.parent.typeName, header),
          input,
          contextValues,
        );
      } catch (err) {
        return fail(err, signal);
      }
      const messages = response.message;
      return {
        ...response,
        message: {
          [Symbol.asyncIterator](): AsyncIterator<MessageShape<O>> {
            const it = messages[Symbol.asyncIterator]();
            return {
              next: () => it.next().catch((err: unknown) => fail(err, signal)),
              ...(it.return === undefined
                ? {}
                : { return: (value?: unknown) => (it.return as NonNullable<typeof it.return>)(value) }),
            };
          },
        },
      };
    },
  };
}
