import {
  create,
  type DescMessage,
  type DescMethodStreaming,
  type DescMethodUnary,
  fromBinary,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type StreamResponse,
  type Transport,
  type UnaryResponse,
} from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";

type HeadersInit = ConstructorParameters<typeof Headers>[0];

/** Options of `createGrpcJsTransport`. */
export interface GrpcJsTransportOptions {
  /** `host:port`. */
  address: string;
  credentials: grpc.ChannelCredentials;
  channelOptions?: grpc.ChannelOptions;
}

function toMetadata(header: HeadersInit | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  new Headers(header).forEach((value, key) => {
    metadata.add(key, value);
  });
  return metadata;
}

function toHeaders(metadata: grpc.Metadata | undefined): Headers {
  const headers = new Headers();
  for (const [key, value] of Object.entries(metadata?.getMap() ?? {})) {
    if (!key.endsWith("-bin")) headers.append(key, String(value));
  }
  return headers;
}

/** A ConnectError from a grpc-js error, with the details of `grpc-status-details-bin`. */
function toConnectError(err: grpc.ServiceError): ConnectError {
  const error = new ConnectError(err.details, err.code as number as Code, toHeaders(err.metadata));
  const raw = err.metadata?.get("grpc-status-details-bin")[0];
  if (raw instanceof Buffer) {
    const status = fromBinary(StatusSchema, raw);
    error.details = status.details.map((any) => ({
      type: any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1),
      value: any.value,
    }));
  }
  return error;
}

/**
 * A Connect `Transport` that speaks gRPC through a grpc-js client, so tests can drive the services
 * with the same typed client over an independent gRPC implementation.
 */
export function createGrpcJsTransport(options: GrpcJsTransportOptions): Transport & { close(): void } {
  const client = new grpc.Client(options.address, options.credentials, options.channelOptions ?? {});
  const callOptions = (timeoutMs: number | undefined): grpc.CallOptions =>
    timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };
  const path = (method: { parent: { typeName: string }; name: string }) =>
    `/${method.parent.typeName}/${method.name}`;

  return {
    close: () => client.close(),

    unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
    ): Promise<UnaryResponse<I, O>> {
      return new Promise((resolve, reject) => {
        let responseHeader = new Headers();
        const call = client.makeUnaryRequest(
          path(method),
          (value: MessageInitShape<I>) => Buffer.from(toBinary(method.input, create(method.input, value))),
          (bytes: Buffer) => fromBinary(method.output, bytes),
          input,
          toMetadata(header),
          callOptions(timeoutMs),
          (err, message) => {
            if (err) reject(toConnectError(err));
            else
              resolve({
                stream: false,
                service: method.parent,
                method,
                header: responseHeader,
                trailer: new Headers(),
                message: message as never,
              });
          },
        );
        call.on("metadata", (m) => {
          responseHeader = toHeaders(m);
        });
        signal?.addEventListener("abort", () => call.cancel(), { once: true });
      });
    },

    async stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
    ): Promise<StreamResponse<I, O>> {
      if (method.methodKind !== "server_streaming")
        throw new ConnectError("only server streaming", Code.Unimplemented);
      let request: MessageInitShape<I> | undefined;
      for await (const m of input) request = m;
      const call = client.makeServerStreamRequest(
        path(method),
        (value: MessageInitShape<I>) => Buffer.from(toBinary(method.input, create(method.input, value))),
        (bytes: Buffer) => fromBinary(method.output, bytes),
        request as MessageInitShape<I>,
        toMetadata(header),
        callOptions(timeoutMs),
      );
      signal?.addEventListener("abort", () => call.cancel(), { once: true });
      async function* messages() {
        try {
          for await (const message of call) yield message;
        } catch (err) {
          throw toConnectError(err as grpc.ServiceError);
        } finally {
          call.cancel();
        }
      }
      return {
        stream: true,
        service: method.parent,
        method,
        header: new Headers(),
        trailer: new Headers(),
        message: messages(),
      } as unknown as StreamResponse<I, O>;
    },
  };
}
