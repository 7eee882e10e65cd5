// The checks of Net requests, with the sentences of casi_proto.validate:
// "<field>: expected <what the contract needs>, got <what was received>".
import { invalid, precondition } from "./errors";
import { FLOAT32, INT64, Wire, decode, describe, dtypeName, floats, ints, shapeText } from "./tensor";

export const PROTOCOL_VERSION = 1;
export const PROTOCOL_MINOR = 2; // the Act stream (1); NetCfg.model (2), of which this Net offers MODEL_MLP only
export const N_INTENTIONS = 5;
export const MAX_ROWS = 1_000_000;
export const LOSS = { PPO: 1, A2C: 2, REINFORCE: 3, REINFORCE_BASELINE: 4 };
export const OPTIM = { ADAM: 1, RMSPROP: 2, SGD: 3 };
const LOSS_NAMES = "LOSS_PPO, LOSS_A2C, LOSS_REINFORCE, LOSS_REINFORCE_BASELINE";
const OPTIM_NAMES = "OPTIM_ADAM, OPTIM_RMSPROP, OPTIM_SGD";

export interface OptimCfg {
  kind: number;
  lr: number;
  momentum: number;
  eps: number;
}

export interface NetCfg {
  protocol_version: number;
  obs_dim: number;
  head_sizes: number[];
  hidden_sizes: number[];
  recurrent: boolean;
  seed: number;
  loss: number;
  optim: OptimCfg | null;
  clip: number;
  value_coef: number;
  entropy_coef: number;
  epochs: number;
  minibatches: number;
  max_grad_norm: number;
  clip_value: boolean;
  activation: number;
}

export function checkNetCfg(cfg: NetCfg): void {
  if (cfg.protocol_version !== PROTOCOL_VERSION) {
    throw precondition(
      `NetCfg.protocol_version: this learner speaks casi.v1 protocol ${PROTOCOL_VERSION}, ` +
        `the caller sent ${cfg.protocol_version}; use a caller of protocol ${PROTOCOL_VERSION}`,
    );
  }
  if (cfg.obs_dim <= 0) throw invalid(`NetCfg.obs_dim: expected > 0, got ${cfg.obs_dim}`);
  const heads = cfg.head_sizes;
  if (heads.length < 2 || heads[0] < 1 || heads.slice(1).some((h) => h !== N_INTENTIONS)) {
    throw invalid(
      `NetCfg.head_sizes: expected [A, 5, 5, ...] (the main head, then one head of 5 ` +
        `intentions per agent slot), got ${shapeText(heads)}`,
    );
  }
  if (cfg.hidden_sizes.some((h) => h <= 0)) {
    throw invalid(`NetCfg.hidden_sizes: expected sizes > 0, got ${shapeText(cfg.hidden_sizes)}`);
  }
  if (![0, 1, 2].includes(cfg.activation)) {
    throw invalid(`NetCfg.activation: expected TANH or RELU, got ${cfg.activation}`);
  }
  if (!Object.values(LOSS).includes(cfg.loss)) {
    throw invalid(`NetCfg.loss: expected one of ${LOSS_NAMES}, got ${cfg.loss}`);
  }
  checkOptimCfg(cfg.optim, "NetCfg.optim");
  checkCoefficients(cfg);
}

export function checkOptimCfg(optim: OptimCfg | null, prefix = "OptimCfg"): OptimCfg {
  const o = optim ?? { kind: 0, lr: 0, momentum: 0, eps: 0 };
  if (!Object.values(OPTIM).includes(o.kind)) {
    throw invalid(`${prefix}.kind: expected one of ${OPTIM_NAMES}, got ${o.kind}`);
  }
  positive(`${prefix}.lr`, o.lr);
  if (o.kind !== OPTIM.SGD) positive(`${prefix}.eps`, o.eps);
  if (!(Number.isFinite(o.momentum) && o.momentum >= 0)) {
    throw invalid(`${prefix}.momentum: expected a finite number >= 0, got ${o.momentum}`);
  }
  return o;
}

function checkCoefficients(cfg: NetCfg): void {
  for (const field of ["epochs", "minibatches"] as const) {
    if (cfg[field] < 1) throw invalid(`NetCfg.${field}: expected >= 1, got ${cfg[field]}`);
  }
  for (const field of ["value_coef", "entropy_coef", "max_grad_norm", "clip"] as const) {
    if (!Number.isFinite(cfg[field])) {
      throw invalid(`NetCfg.${field}: expected a finite number, got ${cfg[field]}`);
    }
  }
  if (cfg.loss === LOSS.PPO) positive("NetCfg.clip", cfg.clip);
  if (cfg.value_coef < 0) throw invalid(`NetCfg.value_coef: expected >= 0, got ${cfg.value_coef}`);
}

function positive(name: string, value: number): void {
  if (!(Number.isFinite(value) && value > 0)) {
    throw invalid(`${name}: expected a finite number > 0, got ${value}`);
  }
}

export function checkHiddenBatch(batch: number): number {
  if (batch < 1) throw invalid(`HiddenCfg.batch: expected >= 1, got ${batch}`);
  if (batch > MAX_ROWS) {
    throw invalid(`HiddenCfg.batch: expected at most ${MAX_ROWS} (the row limit), got ${batch}`);
  }
  return batch;
}

// An array of this dtype and shape; a name ("B") stands for any size >= 1.
export function checkShape(field: string, t: Wire, dtype: number, shape: (number | string)[]): void {
  const fits =
    t.dtype === dtype &&
    t.shape.length === shape.length &&
    shape.every((s, i) => (typeof s === "number" ? t.shape[i] === s : t.shape[i] >= 1));
  if (!fits) {
    throw invalid(`${field}: expected ${dtypeName(dtype)} ${shapeText(shape)}, got ${describe(t)}`);
  }
}

export function checkFinite(field: string, x: Float32Array, shape: number[]): void {
  const i = x.findIndex((v) => !Number.isFinite(v));
  if (i >= 0) throw invalid(`${field}: expected finite values, got ${x[i]} at index ${shapeText(unravel(i, shape))}`);
}

function unravel(index: number, shape: number[]): number[] {
  const out: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    out.unshift(index % shape[d]);
    index = Math.floor(index / shape[d]);
  }
  return out;
}

// Predict's observations: finite float32 [rows, obs_dim]; rows exactly for a recurrent model.
export function checkObs(msg: unknown, obsDim: number, rows: number | "B"): Float32Array {
  const t = decode(msg as never, "obs", { dtype: FLOAT32, ndim: 2 });
  checkShape("obs", t, FLOAT32, [rows, obsDim]);
  if (t.shape[0] > MAX_ROWS) {
    throw invalid(`obs: expected at most ${MAX_ROWS} rows (the row limit), got ${t.shape[0]}`);
  }
  const x = floats(t);
  checkFinite("obs", x, t.shape);
  return x;
}

// Train's batch, every step of it (acted or not), flat in [B * T] order.
export interface Batch {
  b: number;
  t: number;
  obs: Float32Array; // [B*T, obs_dim]
  actions: Float64Array; // [B*T, n_heads]
  logp_old: Float32Array;
  values_old: Float32Array;
  advantages: Float32Array;
  returns: Float32Array;
  mask: Float32Array;
  allowed: Float32Array | null; // [B*T, sum(heads)], 1 where the action could be sampled
}

const FLOAT_FIELDS = ["logp_old", "values_old", "advantages", "returns", "mask"] as const;

// What casi_proto.codec.sequences_from_proto and validate.check_sequences check, in order.
export function checkSequences(msg: Record<string, unknown>, obsDim: number, heads: number[]): Batch {
  const obsWire = decode(msg.obs as never, "obs", { dtype: FLOAT32, ndim: 3 });
  const [b, t] = obsWire.shape;
  const actWire = decode(msg.actions as never, "actions", { dtype: INT64, shape: [b, t, null] });
  const wires = FLOAT_FIELDS.map((f) => decode(msg[f] as never, f, { dtype: FLOAT32, shape: [b, t] }));
  const maskWire = msg.action_mask ? decode(msg.action_mask as never, "action_mask", { dtype: FLOAT32, shape: [b, t, null] }) : null;
  checkShape("obs", obsWire, FLOAT32, ["B", "T", obsDim]);
  const obs = floats(obsWire);
  checkFinite("obs", obs, obsWire.shape);
  checkShape("actions", actWire, INT64, [b, t, heads.length]);
  const actions = ints(actWire);
  checkActions(actions, heads, t);
  const out: Record<string, Float32Array> = {};
  FLOAT_FIELDS.forEach((f, i) => {
    out[f] = floats(wires[i]);
    checkFinite(f, out[f], [b, t]);
  });
  checkZeroOne("mask", out.mask, [b, t]);
  const allowed = maskWire ? checkActionMask(maskWire, actions, out.mask, heads) : null;
  return { b, t, obs, actions, ...(out as Record<(typeof FLOAT_FIELDS)[number], Float32Array>), allowed };
}

// Train's optional action mask: 0/1 float32 [B, T, sum(heads)]; at every acted step each head
// allows some action, and the sampled one.
function checkActionMask(wire: Wire, actions: Float64Array, mask: Float32Array, heads: number[]): Float32Array {
  const [b, t] = wire.shape;
  const width = heads.reduce((x, y) => x + y, 0);
  checkShape("action_mask", wire, FLOAT32, [b, t, width]);
  const allowed = floats(wire);
  checkZeroOne("action_mask", allowed, [b, t, width]);
  for (let row = 0; row < b * t; row++) {
    if (mask[row] === 0) continue;
    const at = `[${Math.floor(row / t)}, ${row % t}]`;
    let start = 0;
    heads.forEach((size, h) => {
      const head = allowed.subarray(row * width + start, row * width + start + size);
      if (!head.some((x) => x > 0)) throw invalid(`action_mask: head ${h} allows no action at acted step ${at}`);
      const taken = actions[row * heads.length + h];
      if (head[taken] === 0) {
        throw invalid(`action_mask: the sampled action ${taken} of head ${h} at ${at} is masked out`);
      }
      start += size;
    });
  }
  return allowed;
}

function checkActions(actions: Float64Array, heads: number[], t: number): void {
  const n = heads.length;
  for (let i = 0; i < actions.length; i++) {
    const h = i % n;
    if (actions[i] < 0 || actions[i] >= heads[h]) {
      const row = Math.floor(i / n);
      throw invalid(
        `actions: head ${h} has ${heads[h]} actions (0..${heads[h] - 1}), got ${actions[i]} ` +
          `at [${Math.floor(row / t)}, ${row % t}, ${h}]`,
      );
    }
  }
}

function checkZeroOne(field: string, x: Float32Array, shape: number[]): void {
  const i = x.findIndex((v) => v !== 0 && v !== 1);
  if (i >= 0) throw invalid(`${field}: expected only 0 and 1, got ${x[i]} at index ${shapeText(unravel(i, shape))}`);
}

// Expected arrays of a state map: name -> shape (all float32).
export type Layout = Map<string, number[]>;

// A map of name -> Tensor with exactly the expected keys, shapes, float32 and finite values.
export function checkState(what: string, given: Map<string, Wire>, expected: Layout): Map<string, Float32Array> {
  const missing = [...expected.keys()].filter((k) => !given.has(k)).sort();
  const extra = [...given.keys()].filter((k) => !expected.has(k)).sort();
  if (missing.length || extra.length) {
    const parts = [];
    const quote = (ks: string[]) => ks.slice(0, 5).map((k) => `'${k}'`).join(", ");
    if (missing.length) parts.push(`missing key(s) ${quote(missing)}`);
    if (extra.length) parts.push(`unexpected key(s) ${quote(extra)}`);
    throw invalid(`${what}: ${parts.join("; ")} (expected ${expected.size} keys)`);
  }
  const out = new Map<string, Float32Array>();
  for (const [key, shape] of expected) {
    const name = `${what}['${key}']`;
    const t = given.get(key)!;
    checkShape(name, t, FLOAT32, shape);
    const x = floats(t);
    checkFinite(name, x, shape);
    out.set(key, x);
  }
  return out;
}

export function checkVersion(version: number): number {
  if (!Number.isInteger(version) || version < 0) {
    throw invalid(`Params.version: expected an integer >= 0, got ${version}`);
  }
  return version;
}

// Whether a Train at `step` repeats the last applied step (validate.is_repeat).
export function isRepeat(step: number, last: number | null, lossKnown: boolean): boolean {
  if (last === null || step > last) return false;
  if (step < last) {
    throw precondition(
      `Sequences.step: expected a step after the last applied step ${last} (or that step ` +
        `again, a retry), got step ${step}; steps must increase`,
    );
  }
  if (!lossKnown) {
    throw precondition(
      `Sequences.step: expected a step after ${last}, got step ${step}, which the current ` +
        "parameters already reflect (their version) but whose loss is not known here; send the next step",
    );
  }
  return true;
}
