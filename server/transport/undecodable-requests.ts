import { Code } from "@connectrpc/connect";
import {
  createAsyncIterable,
  type UniversalHandler,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";

/**
 * connect-node parses a request message before any interceptor runs, and reports one that is not valid
 * Protobuf binary as INTERNAL "parse binary: <reason>" (malformed JSON it already answers as
 * INVALID_ARGUMENT), with no hook into that choice. The gRPC port answers INVALID_ARGUMENT: so does this
 * wrapper, for every protocol, by rewriting that one error where each protocol carries it.
 */
const parseFailure = "parse binary: ";

/** The client's error for connect-node's parse failure message, or undefined for any other error. */
function rewrite(code: Code | string, message: string, type: string): string | undefined {
  if ((code !== Code.Internal && code !== "internal") || !message.startsWith(parseFailure)) return undefined;
  return `cannot decode ${type}: ${message.slice(parseFailure.length)}`;
}

/** The gRPC status in trailers (or a trailers-only answer's headers), rewritten in place. */
function rewriteGrpcStatus(fields: Headers | undefined, type: string): void {
  const status = fields?.get("grpc-status");
  if (fields === undefined || status !== String(Code.Internal)) return;
  const message = rewrite(Code.Internal, decodeURIComponent(fields.get("grpc-message") ?? ""), type);
  if (message === undefined) return;
  fields.set("grpc-status", String(Code.InvalidArgument));
  fields.set("grpc-message", encodeURIComponent(message));
}

/** A Connect error object (`{code, message, details}`) rewritten, or undefined when it is another error. */
function rewriteConnectError(error: unknown, type: string): object | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code !== "string" || typeof message !== "string") return undefined;
  const rewritten = rewrite(code, message, type);
  return rewritten === undefined ? undefined : { ...error, code: "invalid_argument", message: rewritten };
}

/**
 * The body with its end frame (the last enveloped message, `flag` set, uncompressed: connect-node writes
 * one enveloped message per chunk, and compresses none as small as an error) passed through `map`.
 */
async function* mapEndFrame(
  body: AsyncIterable<Uint8Array>,
  flag: number,
  map: (data: Uint8Array) => Uint8Array,
): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    const length = chunk.length >= 5 ? new DataView(chunk.buffer, chunk.byteOffset).getUint32(1) : -1;
    if (chunk[0] !== flag || 5 + length !== chunk.length) {
      yield chunk;
      continue;
    }
    const data = map(chunk.subarray(5));
    const frame = new Uint8Array(5 + data.length);
    new DataView(frame.buffer).setUint32(1, data.length);
    frame[0] = flag;
    frame.set(data, 5);
    yield frame;
  }
}

async function* thenRun(body: AsyncIterable<Uint8Array>, after: () => void): AsyncIterable<Uint8Array> {
  yield* body;
  after();
}

const grpcWebTrailerFlag = 0x80;
const connectEndStreamFlag = 0x02;

/** Rewrites a parse failure in an answer of any protocol (see `parseFailure`). */
async function answer(response: UniversalServerResponse, type: string): Promise<UniversalServerResponse> {
  const contentType = response.header?.get("content-type") ?? "";
  const body = response.body;
  if (contentType.startsWith("application/grpc-web")) {
    if (body === undefined) return response;
    return {
      ...response,
      body: mapEndFrame(body, grpcWebTrailerFlag, (data) => {
        const trailer = trailerParse(data);
        rewriteGrpcStatus(trailer, type);
        return trailerSerialize(trailer);
      }),
    };
  }
  if (contentType.startsWith("application/grpc")) {
    // The status is in the trailer once the body has been written (at once for a call without one).
    rewriteGrpcStatus(response.header, type);
    rewriteGrpcStatus(response.trailer, type);
    if (body === undefined) return response;
    return { ...response, body: thenRun(body, () => rewriteGrpcStatus(response.trailer, type)) };
  }
  if (contentType.startsWith("application/connect+")) {
    if (body === undefined) return response;
    return {
      ...response,
      body: mapEndFrame(body, connectEndStreamFlag, (data) => {
        const end = JSON.parse(new TextDecoder().decode(data)) as { error?: unknown };
        const error = rewriteConnectError(end.error, type);
        return error === undefined ? data : new TextEncoder().encode(JSON.stringify({ ...end, error }));
      }),
    };
  }
  // A Connect unary error: its JSON body, uncompressed.
  const internal = codeToHttpStatus(Code.Internal);
  if (response.status !== internal || response.header?.has("content-encoding") === true || body === undefined)
    return response;
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  const error = rewriteConnectError(JSON.parse(bytes.toString("utf8")), type);
  if (error === undefined) return { ...response, body: createAsyncIterable([bytes]) };
  const rewritten = new TextEncoder().encode(JSON.stringify(error));
  response.header?.set("content-length", String(rewritten.length));
  return {
    ...response,
    status: codeToHttpStatus(Code.InvalidArgument),
    body: createAsyncIterable([rewritten]),
  };
}

/**
 * The handler, answering a request message that does not decode as INVALID_ARGUMENT "cannot decode
 * <message type>: <reason>" in every protocol (gRPC, gRPC-Web, Connect unary and streaming), as the gRPC
 * port does, instead of connect-node's INTERNAL.
 */
export function answerUndecodableAsInvalidArgument(handler: UniversalHandler): UniversalHandler {
  const type = handler.method.input.typeName;
  const wrapped = async (request: Parameters<UniversalHandler>[0]) => answer(await handler(request), type);
  return Object.assign(wrapped, {
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    supportedContentType: handler.supportedContentType,
    protocolNames: handler.protocolNames,
    allowedMethods: handler.allowedMethods,
  });
}
