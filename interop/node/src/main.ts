#!/usr/bin/env node
// casi-node-net: one casi.v1.Net server. Prints one line when it serves,
//   casi-node-net ready on HOST:PORT policy=NAME device=cpu
// (what the orchestrator and the tests wait for); everything else goes to stderr.
// SIGTERM or SIGINT: health NOT_SERVING, the call in flight finishes, exit 0.
import { parseArgs } from "util";
import { Linear } from "./linear";
import { ModelFactory } from "./model";
import { Net } from "./net";
import { PROTO, bind, build, shutdown } from "./server";
import { INTENTION, scripted } from "./scripted";

const USAGE = `usage: casi-node-net [--host H] [--port P] [--policy linear|honest|random|liar|silent]
                     [--token T] [--max-message-mb N] [--proto PATH]
  --host            address to bind (default 127.0.0.1)
  --port            port (default 0: a free one, printed in the ready line)
  --policy          linear (learns: linear actor-critic) or a scripted policy (default linear)
  --token           bearer token every Net call must carry (default: $CASI_TOKEN, else none)
  --max-message-mb  message size limit, both directions (default 256)
  --proto           the contract (default: the repository's proto/casi/v1/net.proto)`;
const POLICIES = ["linear", ...Object.keys(INTENTION)];
const GRACE_MS = 10_000;

function fail(message: string): never {
  console.error(`casi-node-net: ${message}\n${USAGE}`);
  process.exit(2);
}

function options() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "0" },
        policy: { type: "string", default: "linear" },
        token: { type: "string" },
        "max-message-mb": { type: "string", default: "256" },
        proto: { type: "string", default: PROTO },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    fail((err as Error).message);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const port = Number(values.port);
  const mb = Number(values["max-message-mb"]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port: expected 0..65535, got ${values.port}`);
  if (!Number.isInteger(mb) || mb < 1) fail(`--max-message-mb: expected an integer >= 1, got ${values["max-message-mb"]}`);
  if (!POLICIES.includes(values.policy!)) fail(`--policy: expected one of ${POLICIES.join(", ")}, got ${values.policy}`);
  const token = values.token ?? (process.env.CASI_TOKEN || null);
  if (token === "") fail("--token: an empty token would let everyone in; pass a non-empty token");
  return { host: values.host!, port, policy: values.policy!, token, mb, proto: values.proto! };
}

function hostPort(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

async function main(): Promise<void> {
  const opts = options();
  const factory: ModelFactory = opts.policy === "linear" ? (cfg) => new Linear(cfg) : scripted(opts.policy);
  const serving = build({ net: new Net(factory), proto: opts.proto, token: opts.token, maxMessageMb: opts.mb });
  let port: number;
  try {
    port = await bind(serving.server, hostPort(opts.host, opts.port));
  } catch (err) {
    console.error(`casi-node-net: ${(err as Error).message}`);
    process.exit(1);
  }
  const loopback = ["127.0.0.1", "localhost", "::1"].includes(opts.host) || opts.host.startsWith("127.");
  if (!loopback && opts.token === null) {
    console.error(`casi-node-net: warning: listening on ${opts.host} without a token; anyone who reaches it can train it`);
  }
  const stop = () => shutdown(serving, GRACE_MS).then(() => process.exit(0));
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  console.log(`casi-node-net ready on ${hostPort(opts.host, port)} policy=${opts.policy} device=cpu`);
}

main();
