// The scripted policies (SPEC 2.6): noop, and one intention for every agent slot.
// honest: complete truth; liar: specific lie; silent: ignore; random: uniform (all-zero logits).
import { Batch, NetCfg } from "./checks";
import { Model, ZERO_LOSS } from "./model";

// casi.v1.Intention of every intention head; null: uniform.
export const INTENTION: Record<string, number | null> = {
  honest: 4, // INTENTION_COMPLETE_TRUTH
  liar: 1, // INTENTION_SPECIFIC_LIE
  silent: 0, // INTENTION_IGNORE
  random: null,
};
const NOOP = 0;
const NEVER = -30; // exp(-30) ~ 1e-13: never sampled

function logitRow(heads: number[], intention: number | null): Float32Array {
  const row = new Float32Array(heads.reduce((a, b) => a + b, 0));
  if (intention === null) return row;
  row.fill(NEVER);
  row[NOOP] = 0;
  let start = heads[0];
  for (const size of heads.slice(1)) {
    row[start + intention] = 0;
    start += size;
  }
  return row;
}

export function scripted(policy: string): (cfg: NetCfg) => Model {
  return (cfg) => {
    const row = logitRow(cfg.head_sizes, INTENTION[policy]);
    return {
      name: policy,
      nParams: 0,
      recurrent: cfg.recurrent,
      predict: (_obs: Float32Array, rows: number) => {
        const logits = new Float32Array(rows * row.length);
        for (let r = 0; r < rows; r++) logits.set(row, r * row.length);
        return { logits, values: new Float32Array(rows) };
      },
      train: (_batch: Batch) => ({ ...ZERO_LOSS }),
      tensors: () => new Map(),
      optimizer: () => new Map(),
      tensorLayout: () => new Map(),
      optimizerLayout: () => new Map(),
      load: () => undefined,
      resetOptimizer: () => undefined,
    };
  };
}
