// casi.v1.Net over gRPC, from the repository's proto/casi/v1/net.proto, with the standard
// health service, server reflection and an optional bearer token.
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { createHash, timingSafeEqual } from "crypto";
import { HealthImplementation } from "grpc-health-check";
import * as path from "path";
import { NetError } from "./errors";
import { Net } from "./net";

export const NET_SERVICE = "casi.v1.Net";
// dist/ -> interop/node -> interop -> the repository root
export const PROTO = path.resolve(__dirname, "..", "..", "..", "proto", "casi", "v1", "net.proto");
const HEALTH_PREFIX = "/grpc.health.v1.Health/";
const MB = 1024 * 1024;

export function loadProto(file: string): protoLoader.PackageDefinition {
  // Plain objects: field names as in the .proto, 64-bit integers as numbers, enums as
  // numbers, bytes as Buffers, absent fields as their defaults (absent messages as null).
  return protoLoader.loadSync(file, { keepCase: true, longs: Number, enums: Number, defaults: true });
}

type Handler = (request: never) => unknown;

// NetError -> its status code and sentence; anything else -> INTERNAL, and the server goes on.
function failure(method: string, err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof NetError) return { code: err.code, details: err.message };
  console.error(`${method} failed inside the learner:`, err);
  const what = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return {
    code: grpc.status.INTERNAL,
    details: `${method} failed inside the learner (${what}); the learner is still serving, its log has the stack`,
  };
}

function unary(method: string, call: Handler): grpc.handleUnaryCall<unknown, unknown> {
  return (rpc, done) => {
    try {
      done(null, call(rpc.request as never));
    } catch (err) {
      done(failure(method, err));
    }
  };
}

// Act: one Predictions per Observations, in order; the first request Predict refuses ends
// the stream with Predict's status and sentence, and later requests get no reply.
function act(net: Net): grpc.handleBidiStreamingCall<unknown, unknown> {
  return (stream) => {
    let ended = false;
    stream.on("data", (request) => {
      if (ended) return;
      try {
        stream.write(net.predict(request));
      } catch (err) {
        ended = true;
        stream.emit("error", failure("Act", err));
      }
    });
    stream.on("end", () => {
      if (!ended) stream.end();
    });
  };
}

function handlers(net: Net): grpc.UntypedServiceImplementation {
  return {
    Init: unary("Init", (r) => net.init(r)),
    InitHidden: unary("InitHidden", (r) => net.initHidden(r)),
    Predict: unary("Predict", (r) => net.predict(r)),
    Act: act(net),
    ResetOptimizer: unary("ResetOptimizer", (r) => net.resetOptimizer(r)),
    Train: unary("Train", (r) => net.train(r)),
    GetParams: unary("GetParams", () => net.getParams()),
    SetParams: unary("SetParams", (r) => net.setParams(r)),
  };
}

// Why the metadata does not carry `Bearer <token>`, or null if it does.
export function refusal(metadata: grpc.Metadata, token: string): string | null {
  const values = metadata.get("authorization");
  if (values.length === 0) {
    return (
      "this learner requires a token: send metadata 'authorization: Bearer <token>' " +
      "(the token the learner was started with, --token or CASI_TOKEN)"
    );
  }
  const got = String(values[0]);
  if (!got.startsWith("Bearer ")) return "the authorization metadata must read 'Bearer <token>'";
  const digest = (s: string) => createHash("sha256").update(s).digest();
  if (!timingSafeEqual(digest(got), digest(`Bearer ${token}`))) {
    return "the bearer token does not match the token this learner was started with";
  }
  return null;
}

// Refuses every call but health checks without the token, on its metadata, before its message.
function tokenInterceptor(token: string): grpc.ServerInterceptor {
  return (method, call) => {
    if (method.path.startsWith(HEALTH_PREFIX)) return new grpc.ServerInterceptingCall(call);
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        const reason = refusal(metadata, token);
        if (reason === null) next(metadata);
        else call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: reason });
      })
      .build();
    const responder = new grpc.ResponderBuilder().withStart((next) => next(listener)).build();
    return new grpc.ServerInterceptingCall(call, responder);
  };
}

export interface Options {
  net: Net;
  proto: string;
  token: string | null;
  maxMessageMb: number;
}

export interface Serving {
  server: grpc.Server;
  health: HealthImplementation;
}

export function build(opts: Options): Serving {
  const limit = opts.maxMessageMb * MB;
  const server = new grpc.Server({
    "grpc.max_receive_message_length": limit,
    "grpc.max_send_message_length": limit,
    interceptors: opts.token === null ? [] : [tokenInterceptor(opts.token)],
  });
  const pkg = loadProto(opts.proto);
  const proto = grpc.loadPackageDefinition(pkg) as unknown as { casi: { v1: { Net: grpc.ServiceClientConstructor } } };
  server.addService(proto.casi.v1.Net.service, handlers(opts.net));
  const health = new HealthImplementation({ "": "SERVING", [NET_SERVICE]: "SERVING" });
  health.addToServer(server);
  new ReflectionService(pkg as never).addToServer(server);
  return { server, health };
}

export function bind(server: grpc.Server, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(new Error(`cannot bind ${address}: ${err.message}`)) : resolve(port),
    );
  });
}

// Health NOT_SERVING, then the calls in flight finish (up to graceMs), then the server stops.
export function shutdown({ server, health }: Serving, graceMs: number): Promise<void> {
  health.setStatus("", "NOT_SERVING");
  health.setStatus(NET_SERVICE, "NOT_SERVING");
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
