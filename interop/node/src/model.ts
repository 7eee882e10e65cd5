// What a policy behind the Net service does; net.ts does the rest of the contract
// (Init state, step idempotency, validation of Params).
import { Batch, Layout, NetCfg, OptimCfg } from "./checks";

export interface Loss {
  policy_loss: number;
  value_loss: number;
  entropy: number;
  approx_kl: number;
  clip_fraction: number;
  grad_norm: number;
}

export const ZERO_LOSS: Loss = {
  policy_loss: 0,
  value_loss: 0,
  entropy: 0,
  approx_kl: 0,
  clip_fraction: 0,
  grad_norm: 0,
};

export interface State {
  shape: number[];
  values: Float32Array;
}

export interface Model {
  readonly name: string; // e.g. "linear", "honest"
  readonly nParams: number;
  readonly recurrent: boolean;
  // logits [rows, sum(head_sizes)] and values [rows]
  predict(obs: Float32Array, rows: number): { logits: Float32Array; values: Float32Array };
  // One update (the loss of NetCfg.loss); the model is unchanged if it throws.
  train(batch: Batch, step: number): Loss;
  tensors(): Map<string, State>;
  optimizer(): Map<string, State>;
  tensorLayout(): Layout;
  optimizerLayout(): Layout;
  // Checked values (tensorLayout, and optimizerLayout or empty) swapped in at once.
  load(tensors: Map<string, Float32Array>, optimizer: Map<string, Float32Array>): void;
  resetOptimizer(cfg: OptimCfg): void;
}

export type ModelFactory = (cfg: NetCfg) => Model;
