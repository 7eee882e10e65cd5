// Adam, RMSprop and SGD as torch.optim computes them, over named float32 parameters.
// State slots per parameter (Params.optimizer "state.<param>.<slot>"): adam step, exp_avg,
// exp_avg_sq; rmsprop step, square_avg (and momentum_buffer with momentum > 0); sgd
// momentum_buffer with momentum > 0, else none. step is a float32 scalar (shape []), the
// others have their parameter's shape. The state is empty until the first update.
import { Layout, OPTIM, OptimCfg } from "./checks";

export type Named = Map<string, Float32Array>;
const BETA1 = 0.9;
const BETA2 = 0.999;
const ALPHA = 0.99; // RMSprop's smoothing constant

export function slots(cfg: OptimCfg): string[] {
  const momentum = cfg.momentum > 0 ? ["momentum_buffer"] : [];
  if (cfg.kind === OPTIM.ADAM) return ["step", "exp_avg", "exp_avg_sq"];
  if (cfg.kind === OPTIM.RMSPROP) return ["step", "square_avg", ...momentum];
  return momentum;
}

export class Optimizer {
  state: Named = new Map(); // "state.<param>.<slot>" -> values

  constructor(readonly cfg: OptimCfg) {}

  // The keys and shapes of a full state for these parameters.
  layout(shapes: Map<string, number[]>): Layout {
    const out: Layout = new Map();
    for (const [name, shape] of shapes) {
      for (const slot of slots(this.cfg)) out.set(`state.${name}.${slot}`, slot === "step" ? [] : shape);
    }
    return out;
  }

  step(params: Named, grads: Map<string, Float64Array>): void {
    for (const [name, p] of params) {
      const slot = (s: string): Float32Array => this.slot(name, s, s === "step" ? 1 : p.length);
      const g = grads.get(name)!;
      if (this.cfg.kind === OPTIM.ADAM) this.adam(p, g, slot);
      else if (this.cfg.kind === OPTIM.RMSPROP) this.rmsprop(p, g, slot);
      else this.sgd(p, g, slot);
    }
  }

  private slot(name: string, s: string, size: number): Float32Array {
    const key = `state.${name}.${s}`;
    if (!this.state.has(key)) this.state.set(key, new Float32Array(size));
    return this.state.get(key)!;
  }

  private adam(p: Float32Array, g: Float64Array, slot: (s: string) => Float32Array): void {
    const step = slot("step");
    step[0] += 1;
    const m = slot("exp_avg");
    const v = slot("exp_avg_sq");
    const c1 = 1 - BETA1 ** step[0];
    const c2 = Math.sqrt(1 - BETA2 ** step[0]);
    for (let i = 0; i < p.length; i++) {
      m[i] = BETA1 * m[i] + (1 - BETA1) * g[i];
      v[i] = BETA2 * v[i] + (1 - BETA2) * g[i] * g[i];
      p[i] -= (this.cfg.lr / c1) * (m[i] / (Math.sqrt(v[i]) / c2 + this.cfg.eps));
    }
  }

  private rmsprop(p: Float32Array, g: Float64Array, slot: (s: string) => Float32Array): void {
    slot("step")[0] += 1;
    const sq = slot("square_avg");
    const mom = this.cfg.momentum;
    const buf = mom > 0 ? slot("momentum_buffer") : null;
    for (let i = 0; i < p.length; i++) {
      sq[i] = ALPHA * sq[i] + (1 - ALPHA) * g[i] * g[i];
      const d = g[i] / (Math.sqrt(sq[i]) + this.cfg.eps);
      if (buf) buf[i] = mom * buf[i] + d; // a new buffer is zeros
      p[i] -= this.cfg.lr * (buf ? buf[i] : d);
    }
  }

  private sgd(p: Float32Array, g: Float64Array, slot: (s: string) => Float32Array): void {
    const mom = this.cfg.momentum;
    const buf = mom > 0 ? slot("momentum_buffer") : null;
    for (let i = 0; i < p.length; i++) {
      if (buf) buf[i] = mom * buf[i] + g[i];
      p[i] -= this.cfg.lr * (buf ? buf[i] : g[i]);
    }
  }
}
