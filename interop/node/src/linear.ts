// A linear actor-critic: logits = W x + b (a softmax per head), value = u . x + c, trained with
// hand-written gradients. Parameters: "policy.weight" [sum(heads), obs_dim], "policy.bias"
// [sum(heads)], "value.weight" [1, obs_dim], "value.bias" [1], all float32.
//
// Train minimises, over the acted steps (mask 1), as casi_learner.losses does:
//   policy_loss + value_coef * value_loss - entropy_coef * entropy
// with the policy loss of NetCfg.loss: ppo (clipped surrogate on per-minibatch normalised
// advantages, epochs x minibatches, optional value clipping), a2c (-A log p, advantages as
// given), reinforce (-R log p, no critic), reinforce_baseline (-(R - V) log p). value_loss is
// 1/2 the mean squared error. Gradients are clipped to max_grad_norm (global L2), then the
// optimizer steps. Minibatch order is drawn from (NetCfg.seed, step). With Sequences.action_mask
// the log-probabilities and entropies are those of each head's softmax over its allowed actions.
import { Batch, LOSS, Layout, NetCfg, OptimCfg } from "./checks";
import { invalid } from "./errors";
import { Loss, Model, State, ZERO_LOSS } from "./model";
import { Named, Optimizer } from "./optim";
import { normal, permutation, rng } from "./rng";

const POLICY_GAIN = 0.01;
const VALUE_GAIN = 1;
const SHUFFLE = 0x5eed;

interface Row {
  logp: number; // joint log-probability of the taken actions
  entropy: number; // joint entropy
  value: number;
}

export class Linear implements Model {
  readonly name = "linear";
  readonly recurrent = false;
  readonly params: Named = new Map();
  private readonly shapes = new Map<string, number[]>();
  private optim: Optimizer;
  private readonly width: number; // sum(head_sizes)
  private readonly d: number; // obs_dim

  constructor(private readonly cfg: NetCfg) {
    if (cfg.recurrent) {
      throw invalid("NetCfg.recurrent: expected false (this learner is a linear feed-forward model), got true");
    }
    this.d = cfg.obs_dim;
    this.width = cfg.head_sizes.reduce((a, b) => a + b, 0);
    const r = rng(cfg.seed);
    this.add("policy.weight", [this.width, this.d], () => (POLICY_GAIN * normal(r)) / Math.sqrt(this.d));
    this.add("policy.bias", [this.width], () => 0);
    this.add("value.weight", [1, this.d], () => (VALUE_GAIN * normal(r)) / Math.sqrt(this.d));
    this.add("value.bias", [1], () => 0);
    this.optim = new Optimizer(cfg.optim!);
  }

  private add(name: string, shape: number[], draw: () => number): void {
    const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < values.length; i++) values[i] = draw();
    this.params.set(name, values);
    this.shapes.set(name, shape);
  }

  get nParams(): number {
    return [...this.params.values()].reduce((n, p) => n + p.length, 0);
  }

  // -- forward ------------------------------------------------------------------------------

  predict(obs: Float32Array, rows: number): { logits: Float32Array; values: Float32Array } {
    const logits = new Float32Array(rows * this.width);
    const values = new Float32Array(rows);
    const z = new Float64Array(this.width);
    for (let r = 0; r < rows; r++) {
      values[r] = this.forward(obs, r * this.d, nonzero(obs, r * this.d, this.d), z);
      logits.set(z, r * this.width);
    }
    return { logits, values };
  }

  // Fills z with the logits of the observation at obs[at..]; returns its value.
  private forward(obs: Float32Array, at: number, nz: number[], z: Float64Array): number {
    const w = this.params.get("policy.weight")!;
    const b = this.params.get("policy.bias")!;
    const u = this.params.get("value.weight")!;
    for (let k = 0; k < this.width; k++) {
      let s = b[k];
      for (const j of nz) s += w[k * this.d + j] * obs[at + j];
      z[k] = s;
    }
    let v = this.params.get("value.bias")![0];
    for (const j of nz) v += u[j] * obs[at + j];
    return v;
  }

  // z becomes the per-head log-probabilities; returns the log-probability of the actions and
  // the entropy, both summed over heads.
  // With an action mask, a head's softmax is over its allowed actions only (-Infinity elsewhere).
  private logSoftmax(z: Float64Array, batch: Batch, i: number): Omit<Row, "value"> {
    const allowed = batch.allowed;
    if (allowed) for (let k = 0; k < this.width; k++) if (allowed[i * this.width + k] === 0) z[k] = -Infinity;
    let logp = 0;
    let entropy = 0;
    let start = 0;
    this.cfg.head_sizes.forEach((size, h) => {
      let max = -Infinity;
      for (let k = start; k < start + size; k++) max = Math.max(max, z[k]);
      let sum = 0;
      for (let k = start; k < start + size; k++) sum += Math.exp(z[k] - max);
      const lse = max + Math.log(sum);
      for (let k = start; k < start + size; k++) {
        z[k] -= lse;
        entropy -= plogp(z[k]);
      }
      logp += z[start + batch.actions[i * this.cfg.head_sizes.length + h]];
      start += size;
    });
    return { logp, entropy };
  }

  // -- train --------------------------------------------------------------------------------

  train(batch: Batch, step: number): Loss {
    const saved = this.snapshot();
    try {
      const loss = this.passes(batch, step);
      this.checkFinite(loss);
      return loss;
    } catch (err) {
      this.restore(saved);
      throw err;
    }
  }

  private passes(batch: Batch, step: number): Loss {
    const acted = [...batch.mask.keys()].filter((i) => batch.mask[i] > 0);
    const ppo = this.cfg.loss === LOSS.PPO;
    const [epochs, splits] = ppo ? [this.cfg.epochs, this.cfg.minibatches] : [1, 1];
    const r = rng(this.cfg.seed, SHUFFLE, step);
    const totals: Loss = { ...ZERO_LOSS };
    let count = 0;
    for (let e = 0; e < epochs; e++) {
      const order = ppo ? permutation(acted.length, r).map((i) => acted[i]) : acted;
      for (const part of split(order, Math.max(1, Math.min(splits, order.length)))) {
        if (part.length === 0) continue;
        const stats = this.minibatch(batch, part);
        for (const k of Object.keys(totals) as (keyof Loss)[]) totals[k] += stats[k];
        count++;
        totals.grad_norm = stats.grad_norm;
      }
    }
    const grad = totals.grad_norm;
    for (const k of Object.keys(totals) as (keyof Loss)[]) totals[k] /= Math.max(count, 1);
    totals.grad_norm = grad;
    return totals;
  }

  // One gradient step on the steps `rows` of the batch (flat [B*T] indices).
  private minibatch(batch: Batch, rows: number[]): Loss {
    const n = rows.length;
    const advantages = this.advantages(batch, rows);
    const grads = new Map([...this.params].map(([k, p]) => [k, new Float64Array(p.length)]));
    const sums = { policy_loss: 0, value_loss: 0, entropy: 0, approx_kl: 0, clip_fraction: 0 };
    const z = new Float64Array(this.width);
    rows.forEach((i, m) => {
      const nz = nonzero(batch.obs, i * this.d, this.d);
      const value = this.forward(batch.obs, i * this.d, nz, z);
      const row = { ...this.logSoftmax(z, batch, i), value };
      const term = this.terms(batch, i, row, advantages[m]);
      sums.policy_loss += term.policy;
      sums.value_loss += term.value;
      sums.entropy += row.entropy;
      sums.approx_kl += Math.expm1(row.logp - batch.logp_old[i]) - (row.logp - batch.logp_old[i]);
      sums.clip_fraction += term.clipped ? 1 : 0;
      const d = { logp: term.dlogp / n, value: term.dvalue / n, entropy: this.cfg.entropy_coef / n };
      this.backward(batch, i, nz, z, d, grads);
    });
    const norm = clipNorm(grads, this.cfg.max_grad_norm);
    if (!Number.isFinite(norm)) throw nonFinite(`gradient (norm ${norm})`);
    this.optim.step(this.params, grads);
    return {
      policy_loss: sums.policy_loss / n,
      value_loss: sums.value_loss / n,
      entropy: sums.entropy / n,
      approx_kl: sums.approx_kl / n,
      clip_fraction: sums.clip_fraction / n,
      grad_norm: norm,
    };
  }

  // The advantage of each step: normalised per minibatch (ppo), as given (a2c), the return
  // (reinforce); reinforce_baseline subtracts the value later, in terms().
  private advantages(batch: Batch, rows: number[]): number[] {
    const loss = this.cfg.loss;
    const raw = rows.map((i) => (loss === LOSS.PPO || loss === LOSS.A2C ? batch.advantages[i] : batch.returns[i]));
    if (loss !== LOSS.PPO) return raw;
    const mean = raw.reduce((a, b) => a + b, 0) / raw.length;
    const variance = raw.reduce((a, x) => a + (x - mean) ** 2, 0) / Math.max(raw.length - 1, 1);
    return raw.map((x) => (x - mean) / (Math.sqrt(variance) + 1e-8));
  }

  // One step's policy and value terms and their derivatives by logp and by the value.
  private terms(batch: Batch, i: number, row: Row, advantage: number) {
    const cfg = this.cfg;
    const ret = batch.returns[i];
    const err = row.value - ret;
    if (cfg.loss === LOSS.REINFORCE) {
      return { policy: -advantage * row.logp, dlogp: -advantage, value: 0, dvalue: 0, clipped: false };
    }
    const critic = { value: 0.5 * err * err, dvalue: cfg.value_coef * err };
    if (cfg.loss === LOSS.A2C) return { policy: -advantage * row.logp, dlogp: -advantage, ...critic, clipped: false };
    if (cfg.loss === LOSS.REINFORCE_BASELINE) {
      const a = advantage - row.value;
      return { policy: -a * row.logp, dlogp: -a, ...critic, clipped: false };
    }
    const ratio = Math.exp(row.logp - batch.logp_old[i]);
    const plain = -advantage * ratio;
    const clippedRatio = Math.min(Math.max(ratio, 1 - cfg.clip), 1 + cfg.clip);
    const clipped = -advantage * clippedRatio;
    const policy = Math.max(plain, clipped);
    const dlogp = plain >= clipped ? plain : 0;
    const value = cfg.clip_value ? this.clippedValue(row.value, batch.values_old[i], ret) : critic;
    return { policy, dlogp, ...value, clipped: Math.abs(ratio - 1) > cfg.clip };
  }

  private clippedValue(v: number, old: number, ret: number): { value: number; dvalue: number } {
    const c = this.cfg.clip;
    const delta = v - old;
    const vc = old + Math.min(Math.max(delta, -c), c);
    const [e1, e2] = [(v - ret) ** 2, (vc - ret) ** 2];
    const d = e1 >= e2 ? v - ret : Math.abs(delta) <= c ? vc - ret : 0;
    return { value: 0.5 * Math.max(e1, e2), dvalue: this.cfg.value_coef * d };
  }

  // Adds one step's gradient; z holds its per-head log-probabilities.
  private backward(
    batch: Batch,
    i: number,
    nz: number[],
    z: Float64Array,
    d: { logp: number; value: number; entropy: number },
    grads: Map<string, Float64Array>,
  ): void {
    const gw = grads.get("policy.weight")!;
    const gb = grads.get("policy.bias")!;
    const x = batch.obs;
    const at = i * this.d;
    const heads = this.cfg.head_sizes;
    let start = 0;
    heads.forEach((size, h) => {
      const taken = start + batch.actions[i * heads.length + h];
      let entropy = 0;
      for (let k = start; k < start + size; k++) entropy -= plogp(z[k]);
      for (let k = start; k < start + size; k++) {
        if (z[k] === -Infinity) continue; // masked out: no gradient
        const p = Math.exp(z[k]);
        // d(log p_taken)/dz_k = [k = taken] - p_k; d(-entropy)/dz_k = p_k (log p_k + entropy)
        const g = d.logp * ((k === taken ? 1 : 0) - p) + d.entropy * p * (z[k] + entropy);
        gb[k] += g;
        for (const j of nz) gw[k * this.d + j] += g * x[at + j];
      }
      start += size;
    });
    const gu = grads.get("value.weight")!;
    for (const j of nz) gu[j] += d.value * x[at + j];
    grads.get("value.bias")![0] += d.value;
  }

  // -- state --------------------------------------------------------------------------------

  tensors(): Map<string, State> {
    return new Map([...this.params].map(([k, v]) => [k, { shape: this.shapes.get(k)!, values: v.slice() }]));
  }

  optimizer(): Map<string, State> {
    const layout = this.optimizerLayout();
    return new Map([...this.optim.state].map(([k, v]) => [k, { shape: layout.get(k)!, values: v.slice() }]));
  }

  tensorLayout(): Layout {
    return new Map(this.shapes);
  }

  optimizerLayout(): Layout {
    return this.optim.layout(this.shapes);
  }

  load(tensors: Map<string, Float32Array>, optimizer: Map<string, Float32Array>): void {
    for (const [k, v] of tensors) this.params.get(k)!.set(v);
    this.optim.state = new Map([...optimizer].map(([k, v]) => [k, v.slice()]));
  }

  resetOptimizer(cfg: OptimCfg): void {
    this.optim = new Optimizer(cfg);
  }

  private snapshot(): [Named, Named] {
    const copy = (m: Named): Named => new Map([...m].map(([k, v]) => [k, v.slice()]));
    return [copy(this.params), copy(this.optim.state)];
  }

  private restore([params, state]: [Named, Named]): void {
    for (const [k, v] of params) this.params.get(k)!.set(v);
    this.optim.state = state;
  }

  private checkFinite(loss: Loss): void {
    for (const [k, v] of Object.entries(loss)) if (!Number.isFinite(v)) throw nonFinite(`${k} (${v})`);
    for (const [k, v] of [...this.params, ...this.optim.state]) {
      if (!v.every(Number.isFinite)) throw nonFinite(k);
    }
  }
}

// p log p of a log-probability, 0 for an impossible action.
function plogp(logp: number): number {
  return logp === -Infinity ? 0 : Math.exp(logp) * logp;
}

function nonzero(x: Float32Array, at: number, d: number): number[] {
  const out: number[] = [];
  for (let j = 0; j < d; j++) if (x[at + j] !== 0) out.push(j);
  return out;
}

// numpy.array_split: `parts` pieces, the first ones one longer.
function split<T>(xs: T[], parts: number): T[][] {
  const base = Math.floor(xs.length / parts);
  const extra = xs.length % parts;
  const out: T[][] = [];
  let at = 0;
  for (let p = 0; p < parts; p++) {
    const size = base + (p < extra ? 1 : 0);
    out.push(xs.slice(at, at + size));
    at += size;
  }
  return out;
}

// Scales the gradients to a global L2 norm of at most maxNorm (<= 0: no limit), as
// torch.nn.utils.clip_grad_norm_ does; returns the norm before clipping.
function clipNorm(grads: Map<string, Float64Array>, maxNorm: number): number {
  let sq = 0;
  for (const g of grads.values()) for (const x of g) sq += x * x;
  const norm = Math.sqrt(sq);
  const scale = maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1;
  if (scale < 1) for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] *= scale;
  return norm;
}

function nonFinite(what: string): Error {
  return invalid(
    `Train: the update gave a non-finite ${what}; it was not applied, the parameters and ` +
      "the optimizer state are as before this call",
  );
}
