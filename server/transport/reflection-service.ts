import {
  type DescEnum,
  type DescExtension,
  type DescFile,
  type DescMessage,
  type DescService,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { type HostedService, hostService } from "./grpc-server.js";

/** The files and everything they import, each once, dependencies first. */
export function descriptorClosure(roots: readonly DescFile[]): DescFile[] {
  const seen = new Set<string>();
  const out: DescFile[] = [];
  const visit = (file: DescFile) => {
    if (seen.has(file.name)) return;
    seen.add(file.name);
    for (const dep of file.dependencies) visit(dep);
    out.push(file);
  };
  for (const root of roots) visit(root);
  return out;
}

/** A reflection query (`message_request`), the same for v1 and v1alpha. */
export type Query =
  | { case: "fileByFilename" | "fileContainingSymbol" | "allExtensionNumbersOfType"; value: string }
  | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
  | { case: "listServices"; value: string }
  | { case: undefined; value?: undefined };

/** A reflection answer (`message_response`), the same for v1 and v1alpha. */
export type Answer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/**
 * What server reflection answers about a set of Protobuf files: the services they declare, each file by
 * name, and the file declaring any symbol (message, field, oneof, enum, enum value, service, method,
 * extension) or extension, each with its transitive imports. Errors are the gRPC port's
 * (@grpc/reflection's) codes and messages.
 */
export class ReflectionIndex {
  private readonly files = new Map<string, DescFile>();
  private readonly symbols = new Map<string, DescFile>();
  /** Extensions by extended message and field number. */
  private readonly extensions = new Map<string, Map<number, DescFile>>();
  private readonly messages = new Set<string>();
  private readonly services: string[] = [];
  private readonly encoded = new Map<DescFile, Uint8Array>();

  /** @param roots the files served; their imports are served with them. */
  constructor(roots: readonly DescFile[]) {
    for (const file of descriptorClosure(roots)) {
      this.files.set(file.proto.name, file);
      this.encoded.set(file, toBinary(FileDescriptorProtoSchema, file.proto));
      this.indexFile(file);
    }
  }

  /** The answer to one request of the `ServerReflectionInfo` stream. */
  answer(query: Query): Answer {
    switch (query.case) {
      case "listServices":
        return {
          case: "listServicesResponse",
          value: { service: this.services.map((name) => ({ name })) },
        };
      case "fileByFilename":
        return this.withImports(this.files.get(query.value), `Proto file not found: ${query.value}`);
      case "fileContainingSymbol":
        return this.withImports(this.symbols.get(query.value), `Symbol not found: ${query.value}`);
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = query.value;
        return this.withImports(
          this.extensions.get(containingType)?.get(extensionNumber),
          `Extension not found for symbol ${containingType} at field ${extensionNumber}`,
        );
      }
      case "allExtensionNumbersOfType":
        // A known message answers its extensions' numbers, none when it has none.
        if (!this.messages.has(query.value))
          return notFound(`Extensions not found for symbol ${query.value}`);
        return {
          case: "allExtensionNumbersResponse",
          value: {
            baseTypeName: query.value,
            extensionNumber: [...(this.extensions.get(query.value)?.keys() ?? [])],
          },
        };
      case undefined:
        return {
          case: "errorResponse",
          value: {
            errorCode: Code.Unimplemented,
            errorMessage: "the request names none of the reflection queries this server answers",
          },
        };
    }
  }

  /** The file first, then every file it imports, dependencies first. */
  private withImports(file: DescFile | undefined, missing: string): Answer {
    if (file === undefined) return notFound(missing);
    const files = [file, ...descriptorClosure(file.dependencies)];
    return {
      case: "fileDescriptorResponse",
      value: {
        fileDescriptorProto: files.map(
          (f) => this.encoded.get(f) ?? toBinary(FileDescriptorProtoSchema, f.proto),
        ),
      },
    };
  }

  private indexFile(file: DescFile): void {
    const symbol = (name: string) => this.symbols.set(name, file);
    const extension = (ext: DescExtension) => {
      symbol(ext.typeName);
      const byNumber = this.extensions.get(ext.extendee.typeName) ?? new Map<number, DescFile>();
      byNumber.set(ext.number, file);
      this.extensions.set(ext.extendee.typeName, byNumber);
    };
    const enumeration = (desc: DescEnum, scope: string) => {
      symbol(desc.typeName);
      for (const value of desc.values) {
        // Protobuf scopes a value beside its enum; @grpc/reflection inside it: both are found.
        symbol(`${scope}${value.name}`);
        symbol(`${desc.typeName}.${value.name}`);
      }
    };
    const message = (desc: DescMessage) => {
      symbol(desc.typeName);
      this.messages.add(desc.typeName);
      for (const field of desc.fields) symbol(`${desc.typeName}.${field.name}`);
      for (const oneof of desc.oneofs) symbol(`${desc.typeName}.${oneof.name}`);
      for (const nested of desc.nestedMessages) message(nested);
      for (const nested of desc.nestedEnums) enumeration(nested, `${desc.typeName}.`);
      for (const nested of desc.nestedExtensions) extension(nested);
    };
    const service = (desc: DescService) => {
      symbol(desc.typeName);
      this.services.push(desc.typeName);
      for (const method of desc.methods) symbol(`${desc.typeName}.${method.name}`);
    };
    const scope = file.proto.package === "" ? "" : `${file.proto.package}.`;
    for (const desc of file.enums) enumeration(desc, scope);
    for (const desc of file.messages) message(desc);
    for (const desc of file.services) service(desc);
    for (const desc of file.extensions) extension(desc);
  }
}

function notFound(message: string): Answer {
  return { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: message } };
}

/**
 * Server reflection (`grpc.reflection.v1.ServerReflection` and `grpc.reflection.v1alpha`, which grpcurl
 * and older clients use) over the files of `services` and their imports, as `HostedService`s any
 * transport hosting bidirectional streams can serve. Each request of the stream is answered in order.
 */
export function reflectionServices(services: readonly DescService[]): HostedService[] {
  const index = new ReflectionIndex(services.map((s) => s.file));
  async function* serverReflectionInfo<R extends { host: string; messageRequest: Query }>(
    requests: AsyncIterable<R>,
  ) {
    for await (const request of requests)
      yield {
        validHost: request.host,
        originalRequest: request,
        messageResponse: index.answer(request.messageRequest),
      };
  }
  return [
    hostService(ServerReflection, { serverReflectionInfo }),
    hostService(ServerReflectionV1alpha, { serverReflectionInfo }),
  ];
}
