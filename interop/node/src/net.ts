// The Net contract around a Model: Init state, the Train step key, Params in and out.
// Requests and replies are the plain objects of @grpc/proto-loader.
import {
  NetCfg,
  OptimCfg,
  PROTOCOL_MINOR,
  PROTOCOL_VERSION,
  checkHiddenBatch,
  checkNetCfg,
  checkObs,
  checkOptimCfg,
  checkSequences,
  checkState,
  checkVersion,
  isRepeat,
} from "./checks";
import { precondition } from "./errors";
import { Loss, Model, ModelFactory, State } from "./model";
import { TensorMsg, Wire, decode, encode } from "./tensor";

export const VERSION = "0.1.0";
type Msg = Record<string, unknown>;

export class Net {
  private cfg: NetCfg | null = null;
  private model: Model | null = null;
  private version = 0;
  private lastLoss: Loss | null = null; // of the Train at step `version`
  private hiddenBatch: number | null = null;

  constructor(private readonly makeModel: ModelFactory) {}

  private ready(call: string): Model {
    if (this.model === null) throw precondition(`${call} before Init: call Init with a NetCfg first`);
    return this.model;
  }

  init(cfg: NetCfg): Msg {
    checkNetCfg(cfg);
    const model = this.makeModel(cfg);
    [this.cfg, this.model] = [cfg, model];
    [this.version, this.lastLoss, this.hiddenBatch] = [0, null, null];
    return {
      protocol_version: PROTOCOL_VERSION,
      implementation: `casi-node-net/${model.name} ${VERSION} (Node ${process.version})`,
      device: "cpu",
      n_params: model.nParams,
      action_mask: true,
      protocol_minor: PROTOCOL_MINOR,
      act_stream: true,
    };
  }

  initHidden(msg: { batch: number }): Msg {
    this.ready("InitHidden");
    this.hiddenBatch = checkHiddenBatch(msg.batch);
    return {};
  }

  predict(msg: { obs: TensorMsg | null }): Msg {
    const model = this.ready("Predict");
    let rows: number | "B" = "B";
    if (model.recurrent) {
      if (this.hiddenBatch === null) throw precondition("recurrent model: call InitHidden(batch) before Predict");
      rows = this.hiddenBatch;
    }
    const obs = checkObs(msg.obs, this.cfg!.obs_dim, rows);
    const b = obs.length / this.cfg!.obs_dim;
    const { logits, values } = model.predict(obs, b);
    return { logits: encode(logits, [b, logits.length / b]), values: encode(values, [b]) };
  }

  resetOptimizer(msg: OptimCfg): Msg {
    this.ready("ResetOptimizer").resetOptimizer(checkOptimCfg(msg));
    return {};
  }

  train(msg: Msg & { step: number }): Loss {
    const model = this.ready("Train");
    const last = this.version > 0 ? this.version : null;
    if (isRepeat(msg.step, last, this.lastLoss !== null)) return this.lastLoss!;
    const batch = checkSequences(msg, this.cfg!.obs_dim, this.cfg!.head_sizes);
    const loss = model.train(batch, msg.step);
    [this.version, this.lastLoss] = [msg.step, loss];
    return loss;
  }

  getParams(): Msg {
    const model = this.ready("GetParams");
    return { tensors: toMsgs(model.tensors()), optimizer: toMsgs(model.optimizer()), version: this.version };
  }

  // Everything is checked before anything changes (casi_proto.codec, then validate.check_state).
  setParams(msg: { tensors: Record<string, TensorMsg>; optimizer: Record<string, TensorMsg>; version: number }): Msg {
    const tensors = decodeAll(msg.tensors, "tensors");
    const optimizer = decodeAll(msg.optimizer, "optimizer");
    const model = this.ready("SetParams");
    const none = model.nParams === 0 ? ` (the ${model.name} policy has none)` : "";
    const t = checkState(`tensors${none}`, tensors, model.tensorLayout());
    const o = optimizer.size === 0 ? new Map() : checkState(`optimizer${none}`, optimizer, model.optimizerLayout());
    const version = checkVersion(msg.version);
    model.load(t, o);
    [this.version, this.lastLoss] = [version, null];
    return {};
  }
}

function decodeAll(msgs: Record<string, TensorMsg> | null, kind: string): Map<string, Wire> {
  const entries = Object.entries(msgs ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  return new Map(entries.map(([k, v]) => [k, decode(v, `${kind}[${k}]`)]));
}

function toMsgs(state: Map<string, State>): Record<string, TensorMsg> {
  return Object.fromEntries([...state].map(([k, s]) => [k, encode(s.values, s.shape)]));
}
