import type { PeerCertificate } from "node:tls";
import {
  create,
  type DescFile,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  isMessage,
  toBinary,
} from "@bufbuild/protobuf";
import { anyPack, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createContextValues,
  createHandlerContext,
  type Interceptor,
  type ServiceImpl,
  type StreamRequest,
  type StreamResponse,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { file_grpc_health_v1_health } from "../../gen/grpc/health/v1/health_pb.js";
import { toConnectError } from "../services/errors.js";
import { peerKey } from "./peer.js";

type ServerSurfaceCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;

/** A service implementation to host on both transports. */
export interface HostedService {
  service: DescService;
  impl: Partial<ServiceImpl<DescService>>;
}

/** Pairs a service descriptor with its implementation, type-checked. */
export function hostService<S extends DescService>(service: S, impl: ServiceImpl<S>): HostedService {
  return { service, impl: impl as unknown as Partial<ServiceImpl<DescService>> };
}

/** Marks a request that failed to decode, so the handler answers INVALID_ARGUMENT instead of INTERNAL. */
class UndecodableRequest {
  constructor(readonly error: unknown) {}
}

type AnyImpl = (req: unknown, ctx: unknown) => unknown;

/** Size of request metadata as HTTP/2 counts it (name + value + 32 per entry). */
function metadataBytes(metadata: grpc.Metadata): number {
  let bytes = 0;
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    for (const value of values)
      bytes += key.length + (typeof value === "string" ? value.length : value.byteLength) + 32;
  }
  return bytes;
}

/** The error for a request grpc-js cannot hand to the service: undecodable, or metadata over the limit. */
function refusal(call: ServerSurfaceCall, method: DescMethod): ConnectError | undefined {
  if (call.request instanceof UndecodableRequest) {
    return new ConnectError(`cannot decode ${method.input.typeName}`, Code.InvalidArgument);
  }
  const bytes = metadataBytes(call.metadata);
  if (bytes > maxMetadataBytes) {
    return new ConnectError(
      `request metadata is ${bytes} bytes; the limit is ${maxMetadataBytes}`,
      Code.InvalidArgument,
    );
  }
  return undefined;
}

/** Every value of every text header (a repeated header keeps all its values, as HTTP/2 sends them). */
function metadataToHeaders(metadata: grpc.Metadata): Headers {
  const headers = new Headers();
  for (const key of Object.keys(metadata.getMap())) {
    if (key.endsWith("-bin")) continue;
    for (const value of metadata.get(key)) headers.append(key, String(value));
  }
  return headers;
}

function headersToMetadata(headers: Headers, into = new grpc.Metadata()): grpc.Metadata {
  headers.forEach((value, key) => {
    if (!key.endsWith("-bin")) into.add(key, value);
  });
  return into;
}

/** The grpc-js status object of any error, with `grpc-status-details-bin` for the error details. */
export function toGrpcStatus(err: unknown): Partial<grpc.StatusObject> {
  const ce = toConnectError(err);
  const metadata = new grpc.Metadata();
  const details = ce.details.flatMap((d) => ("desc" in d ? [anyPack(d.desc, create(d.desc, d.value))] : []));
  if (details.length > 0) {
    const status = create(StatusSchema, { code: ce.code, message: ce.rawMessage, details });
    metadata.set("grpc-status-details-bin", Buffer.from(toBinary(StatusSchema, status)));
  }
  headersToMetadata(ce.metadata, metadata);
  return { code: ce.code as number as grpc.status, details: ce.rawMessage, metadata };
}

function peerAddress(call: ServerSurfaceCall): string {
  const peer = call.getPeer();
  const colon = peer.lastIndexOf(":");
  return (colon > 0 ? peer.slice(0, colon) : peer).replace(/^\[|\]$/g, "");
}

function timeoutOf(call: ServerSurfaceCall): number | undefined {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  return Number.isFinite(ms) && ms > 0 ? Math.max(0, ms - Date.now()) : undefined;
}

/** The verified client certificate of each HTTP/2 connection, read once per connection. */
const peerCertificates = new WeakMap<object, PeerCertificate | null>();

/**
 * The HTTP/2 session a grpc-js call arrived on. grpc-js keeps it private (`call.call.stream.session`,
 * behind any server interceptors' `nextCall`); undefined if that layout ever changes.
 */
function http2SessionOf(call: ServerSurfaceCall): object | undefined {
  type Inner = { stream?: { session?: object }; nextCall?: unknown };
  let inner = (call as unknown as { call?: Inner }).call;
  for (let depth = 0; inner !== undefined && depth < 8; depth++) {
    if (inner.stream?.session !== undefined) return inner.stream.session;
    inner = inner.nextCall as Inner | undefined;
  }
  return undefined;
}

/**
 * The client certificate of a call. `getAuthContext()` re-reads it from the TLS socket (building a new
 * object, fingerprints included) on every call; it cannot change on a connection, so it is kept per
 * HTTP/2 session, or read each time when the session is not reachable.
 */
function peerCertificate(call: ServerSurfaceCall): PeerCertificate | undefined {
  const session = http2SessionOf(call);
  if (session === undefined) return call.getAuthContext().sslPeerCertificate;
  let certificate = peerCertificates.get(session);
  if (certificate === undefined) {
    certificate = call.getAuthContext().sslPeerCertificate ?? null;
    peerCertificates.set(session, certificate);
  }
  return certificate ?? undefined;
}

function requestCommon(
  service: DescService,
  method: DescMethod,
  call: ServerSurfaceCall,
  signal: AbortSignal,
) {
  const contextValues = createContextValues();
  const certificate = peerCertificate(call);
  contextValues.set(
    peerKey,
    certificate ? { certificate, address: peerAddress(call) } : { address: peerAddress(call) },
  );
  const header = metadataToHeaders(call.metadata);
  // grpc-js keeps the client's timeout out of the metadata; interceptors see it as on the Connect port.
  const timeoutMs = timeoutOf(call);
  if (timeoutMs !== undefined) header.set("grpc-timeout", `${Math.ceil(timeoutMs)}m`);
  return {
    service,
    requestMethod: "POST",
    url: `/${service.typeName}/${method.name}`,
    signal,
    header,
    contextValues,
  };
}

function handlerContext(req: UnaryRequest | StreamRequest, call: ServerSurfaceCall) {
  const timeoutMs = timeoutOf(call);
  return createHandlerContext({
    service: req.service,
    method: req.method,
    protocolName: "grpc",
    requestMethod: req.requestMethod,
    url: req.url,
    requestSignal: req.signal,
    requestHeader: req.header,
    contextValues: req.contextValues,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
}

function asMessage<D extends DescMessage>(desc: D, value: unknown) {
  return isMessage(value, desc) ? value : create(desc, value as never);
}

/**
 * A signal aborted when the client cancels the call, and `finished()` to stop listening once the call
 * is answered: grpc-js reports every stream that closes as cancelled, answered or not, and each would
 * otherwise build an error nobody reads.
 */
function cancelSignal(call: ServerSurfaceCall): { controller: AbortController; finished(): void } {
  const controller = new AbortController();
  // grpc-js reports a call whose deadline passed as cancelled too.
  const onCancelled = () =>
    controller.abort(
      timeoutOf(call) === 0
        ? new ConnectError("the deadline passed", Code.DeadlineExceeded)
        : new ConnectError("the client cancelled the call", Code.Canceled),
    );
  call.once("cancelled", onCancelled);
  return { controller, finished: () => call.off("cancelled", onCancelled) };
}

function unaryHandler(
  service: DescService,
  method: DescMethod,
  impl: AnyImpl,
  interceptors: Interceptor[],
): grpc.handleUnaryCall<unknown, unknown> {
  const invoke = async (req: UnaryRequest | StreamRequest): Promise<UnaryResponse | StreamResponse> => {
    const call = (req as unknown as { grpcCall: ServerSurfaceCall }).grpcCall;
    const ctx = handlerContext(req, call);
    const out = await impl(req.message, ctx);
    return {
      stream: false,
      service,
      method,
      header: ctx.responseHeader,
      trailer: ctx.responseTrailer,
      message: asMessage(method.output, out),
    } as UnaryResponse;
  };
  const chain = interceptors.reduceRight((next, interceptor) => interceptor(next), invoke);
  return (call, callback) => {
    const refused = refusal(call, method);
    if (refused !== undefined) {
      callback(toGrpcStatus(refused));
      return;
    }
    const { controller, finished } = cancelSignal(call);
    const req = {
      ...requestCommon(service, method, call, controller.signal),
      stream: false,
      method,
      message: call.request,
      grpcCall: call,
    } as unknown as UnaryRequest;
    chain(req).then(
      (res) => {
        finished();
        const trailer = headersToMetadata(res.trailer);
        if ([...res.header.keys()].length > 0) call.sendMetadata(headersToMetadata(res.header));
        callback(null, res.message, trailer);
      },
      (err: unknown) => {
        finished();
        callback(toGrpcStatus(err));
      },
    );
  };
}

function serverStreamingHandler(
  service: DescService,
  method: DescMethod,
  impl: AnyImpl,
  interceptors: Interceptor[],
): grpc.handleServerStreamingCall<unknown, unknown> {
  const invoke = async (req: UnaryRequest | StreamRequest): Promise<UnaryResponse | StreamResponse> => {
    const call = (req as unknown as { grpcCall: ServerSurfaceCall }).grpcCall;
    const ctx = handlerContext(req, call);
    let input: unknown;
    for await (const m of req.message as AsyncIterable<unknown>) input = m;
    const output = impl(input, ctx) as AsyncIterable<unknown>;
    return {
      stream: true,
      service,
      method,
      header: ctx.responseHeader,
      trailer: ctx.responseTrailer,
      message: output,
    } as unknown as StreamResponse;
  };
  const chain = interceptors.reduceRight((next, interceptor) => interceptor(next), invoke);
  return (call) => {
    const refused = refusal(call, method);
    if (refused !== undefined) {
      call.emit("error", toGrpcStatus(refused));
      return;
    }
    const { controller, finished } = cancelSignal(call);
    const request = call.request;
    const req = {
      ...requestCommon(service, method, call, controller.signal),
      stream: true,
      method,
      message: (async function* () {
        yield request;
      })(),
      grpcCall: call,
    } as unknown as StreamRequest;
    const run = async () => {
      const res = (await chain(req)) as StreamResponse;
      if ([...res.header.keys()].length > 0) call.sendMetadata(headersToMetadata(res.header));
      for await (const message of res.message) {
        if (controller.signal.aborted) break;
        if (!call.write(asMessage(method.output, message))) {
          await new Promise<void>((resolve) => {
            const done = () => {
              call.off("drain", done);
              controller.signal.removeEventListener("abort", done);
              resolve();
            };
            call.on("drain", done);
            controller.signal.addEventListener("abort", done);
          });
        }
      }
      if (!controller.signal.aborted) call.end(headersToMetadata(res.trailer));
    };
    run().then(finished, (err: unknown) => {
      finished();
      if (!controller.signal.aborted) call.emit("error", toGrpcStatus(err));
    });
  };
}

/** A Buffer over the bytes `toBinary` just made (no copy: nothing else holds them). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Serialized stream messages by message object. A service may send one message object to many streams
 * (a decision to every watcher of the approval): it is serialized once. grpc-js copies the bytes into
 * each stream's frame, so sharing them is safe.
 */
const serializedMessages = new WeakMap<object, Buffer>();

function serializeShared(desc: DescMessage, message: object): Buffer {
  let bytes = serializedMessages.get(message);
  if (bytes === undefined) {
    bytes = asBuffer(toBinary(desc, message as never));
    serializedMessages.set(message, bytes);
  }
  return bytes;
}

/**
 * A grpc-js service definition that hosts a protobuf-es `ServiceImpl`, running the same Connect
 * interceptors as the Connect server, so neither the services nor the interceptors know which transport
 * called them. Messages are (de)serialized with protobuf-es from the service descriptor.
 */
export function createGrpcServiceDefinition(
  hosted: HostedService,
  interceptors: Interceptor[],
): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const method of hosted.service.methods) {
    const impl = (hosted.impl as Record<string, AnyImpl | undefined>)[method.localName];
    const unimplemented: AnyImpl = () => {
      throw new ConnectError(`${method.name} is not implemented`, Code.Unimplemented);
    };
    const bound = impl ?? unimplemented;
    const requestStream = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
    const responseStream = method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming";
    definition[method.name] = {
      path: `/${hosted.service.typeName}/${method.name}`,
      requestStream,
      responseStream,
      requestSerialize: (value: unknown) => asBuffer(toBinary(method.input, value as never)),
      requestDeserialize: (bytes: Buffer) => {
        try {
          return fromBinary(method.input, bytes);
        } catch (err) {
          return new UndecodableRequest(err);
        }
      },
      responseSerialize: responseStream
        ? (value: unknown) => serializeShared(method.output, value as object)
        : (value: unknown) => asBuffer(toBinary(method.output, value as never)),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
      originalName: method.localName,
    };
    if (method.methodKind === "unary") {
      implementation[method.name] = unaryHandler(hosted.service, method, bound, interceptors);
    } else if (method.methodKind === "server_streaming") {
      implementation[method.name] = serverStreamingHandler(hosted.service, method, bound, interceptors);
    } else {
      throw new Error(`${method.methodKind} methods are not supported by the grpc-js adapter`);
    }
  }
  return { definition: definition as grpc.ServiceDefinition, implementation };
}

/** Largest request metadata (headers) accepted by the gRPC server, in bytes. */
export const maxMetadataBytes = 16 * 1024;

/** Options of `createGrpcServer`. */
export interface GrpcServerOptions {
  services: HostedService[];
  interceptors: Interceptor[];
  /** Largest request message accepted, in bytes. */
  maxReceiveMessageLength: number;
  /**
   * Connection limits (grpc-js channel options); none without. A connection is pinged after `idleTimeoutMs`
   * without traffic and dropped when the ping is not answered within `pingTimeoutMs` (this also ends an
   * HTTP/2 connection that never completes its preface, which the idle GOAWAY cannot).
   */
  connections?: { maxAgeMs: number; maxAgeGraceMs: number; idleTimeoutMs: number; pingTimeoutMs: number };
}

/** The grpc-js server with the hosted services, server reflection (v1, v1alpha) and `grpc.health.v1`. */
export function createGrpcServer(options: GrpcServerOptions): {
  server: grpc.Server;
  health: HealthImplementation;
} {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": options.maxReceiveMessageLength,
    "grpc.max_metadata_size": maxMetadataBytes,
    "grpc.keepalive_permit_without_calls": 1,
    ...(options.connections === undefined
      ? {}
      : {
          "grpc.max_connection_age_ms": options.connections.maxAgeMs,
          "grpc.max_connection_age_grace_ms": options.connections.maxAgeGraceMs,
          "grpc.max_connection_idle_ms": options.connections.idleTimeoutMs,
          "grpc.keepalive_time_ms": options.connections.idleTimeoutMs,
          "grpc.keepalive_timeout_ms": options.connections.pingTimeoutMs,
        }),
  });
  for (const hosted of options.services) {
    const { definition, implementation } = createGrpcServiceDefinition(hosted, options.interceptors);
    server.addService(definition, implementation);
  }
  const health = new HealthImplementation({ "": "SERVING" });
  health.addToServer(server);
  const files = descriptorClosure([
    ...options.services.map((s) => s.service.file),
    file_grpc_health_v1_health,
  ]);
  const reflection = new ReflectionService({
    countersign: { format: "Protocol Buffer 3 DescriptorProto", fileDescriptorProtos: files },
  } as never);
  reflection.addToServer(server);
  return { server, health };
}

/** Serialized FileDescriptorProtos of the files and everything they import, dependencies first. */
function descriptorClosure(roots: DescFile[]): Buffer[] {
  const seen = new Set<string>();
  const out: Buffer[] = [];
  const visit = (file: DescFile) => {
    if (seen.has(file.name)) return;
    seen.add(file.name);
    for (const dep of file.dependencies) visit(dep);
    out.push(Buffer.from(toBinary(FileDescriptorProtoSchema, file.proto)));
  };
  for (const root of roots) visit(root);
  return out;
}
