from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_INT8: _ClassVar[DType]
    DTYPE_INT16: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_INT64: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_BOOL: _ClassVar[DType]

class LossKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOSS_UNSPECIFIED: _ClassVar[LossKind]
    LOSS_PPO: _ClassVar[LossKind]
    LOSS_A2C: _ClassVar[LossKind]
    LOSS_REINFORCE: _ClassVar[LossKind]
    LOSS_REINFORCE_BASELINE: _ClassVar[LossKind]

class OptimKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPTIM_UNSPECIFIED: _ClassVar[OptimKind]
    OPTIM_ADAM: _ClassVar[OptimKind]
    OPTIM_RMSPROP: _ClassVar[OptimKind]
    OPTIM_SGD: _ClassVar[OptimKind]

class Activation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVATION_UNSPECIFIED: _ClassVar[Activation]
    ACTIVATION_TANH: _ClassVar[Activation]
    ACTIVATION_RELU: _ClassVar[Activation]

class Intention(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTENTION_IGNORE: _ClassVar[Intention]
    INTENTION_SPECIFIC_LIE: _ClassVar[Intention]
    INTENTION_GENERAL_LIE: _ClassVar[Intention]
    INTENTION_INCOMPLETE_TRUTH: _ClassVar[Intention]
    INTENTION_COMPLETE_TRUTH: _ClassVar[Intention]

class ModelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_MLP: _ClassVar[ModelKind]
    MODEL_SLOTS: _ClassVar[ModelKind]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT64: DType
DTYPE_FLOAT16: DType
DTYPE_INT8: DType
DTYPE_INT16: DType
DTYPE_INT32: DType
DTYPE_INT64: DType
DTYPE_UINT8: DType
DTYPE_BOOL: DType
LOSS_UNSPECIFIED: LossKind
LOSS_PPO: LossKind
LOSS_A2C: LossKind
LOSS_REINFORCE: LossKind
LOSS_REINFORCE_BASELINE: LossKind
OPTIM_UNSPECIFIED: OptimKind
OPTIM_ADAM: OptimKind
OPTIM_RMSPROP: OptimKind
OPTIM_SGD: OptimKind
ACTIVATION_UNSPECIFIED: Activation
ACTIVATION_TANH: Activation
ACTIVATION_RELU: Activation
INTENTION_IGNORE: Intention
INTENTION_SPECIFIC_LIE: Intention
INTENTION_GENERAL_LIE: Intention
INTENTION_INCOMPLETE_TRUTH: Intention
INTENTION_COMPLETE_TRUTH: Intention
MODEL_MLP: ModelKind
MODEL_SLOTS: ModelKind

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class OptimCfg(_message.Message):
    __slots__ = ("kind", "lr", "momentum", "eps")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    kind: OptimKind
    lr: float
    momentum: float
    eps: float
    def __init__(self, kind: _Optional[_Union[OptimKind, str]] = ..., lr: _Optional[float] = ..., momentum: _Optional[float] = ..., eps: _Optional[float] = ...) -> None: ...

class GameShape(_message.Message):
    __slots__ = ("attrs", "values", "agents")
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    attrs: int
    values: int
    agents: int
    def __init__(self, attrs: _Optional[int] = ..., values: _Optional[int] = ..., agents: _Optional[int] = ...) -> None: ...

class NetCfg(_message.Message):
    __slots__ = ("protocol_version", "obs_dim", "head_sizes", "hidden_sizes", "recurrent", "seed", "loss", "optim", "clip", "value_coef", "entropy_coef", "epochs", "minibatches", "max_grad_norm", "clip_value", "activation", "protocol_minor", "model", "game")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OBS_DIM_FIELD_NUMBER: _ClassVar[int]
    HEAD_SIZES_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZES_FIELD_NUMBER: _ClassVar[int]
    RECURRENT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    OPTIM_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    VALUE_COEF_FIELD_NUMBER: _ClassVar[int]
    ENTROPY_COEF_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MINIBATCHES_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    CLIP_VALUE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_MINOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GAME_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    obs_dim: int
    head_sizes: _containers.RepeatedScalarFieldContainer[int]
    hidden_sizes: _containers.RepeatedScalarFieldContainer[int]
    recurrent: bool
    seed: int
    loss: LossKind
    optim: OptimCfg
    clip: float
    value_coef: float
    entropy_coef: float
    epochs: int
    minibatches: int
    max_grad_norm: float
    clip_value: bool
    activation: Activation
    protocol_minor: int
    model: ModelKind
    game: GameShape
    def __init__(self, protocol_version: _Optional[int] = ..., obs_dim: _Optional[int] = ..., head_sizes: _Optional[_Iterable[int]] = ..., hidden_sizes: _Optional[_Iterable[int]] = ..., recurrent: _Optional[bool] = ..., seed: _Optional[int] = ..., loss: _Optional[_Union[LossKind, str]] = ..., optim: _Optional[_Union[OptimCfg, _Mapping]] = ..., clip: _Optional[float] = ..., value_coef: _Optional[float] = ..., entropy_coef: _Optional[float] = ..., epochs: _Optional[int] = ..., minibatches: _Optional[int] = ..., max_grad_norm: _Optional[float] = ..., clip_value: _Optional[bool] = ..., activation: _Optional[_Union[Activation, str]] = ..., protocol_minor: _Optional[int] = ..., model: _Optional[_Union[ModelKind, str]] = ..., game: _Optional[_Union[GameShape, _Mapping]] = ...) -> None: ...

class InitReply(_message.Message):
    __slots__ = ("protocol_version", "implementation", "device", "n_params", "action_mask", "protocol_minor", "act_stream", "model")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMPLEMENTATION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    N_PARAMS_FIELD_NUMBER: _ClassVar[int]
    ACTION_MASK_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_MINOR_FIELD_NUMBER: _ClassVar[int]
    ACT_STREAM_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    implementation: str
    device: str
    n_params: int
    action_mask: bool
    protocol_minor: int
    act_stream: bool
    model: ModelKind
    def __init__(self, protocol_version: _Optional[int] = ..., implementation: _Optional[str] = ..., device: _Optional[str] = ..., n_params: _Optional[int] = ..., action_mask: _Optional[bool] = ..., protocol_minor: _Optional[int] = ..., act_stream: _Optional[bool] = ..., model: _Optional[_Union[ModelKind, str]] = ...) -> None: ...

class HiddenCfg(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: int
    def __init__(self, batch: _Optional[int] = ...) -> None: ...

class Observations(_message.Message):
    __slots__ = ("obs",)
    OBS_FIELD_NUMBER: _ClassVar[int]
    obs: Tensor
    def __init__(self, obs: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Predictions(_message.Message):
    __slots__ = ("logits", "values")
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    logits: Tensor
    values: Tensor
    def __init__(self, logits: _Optional[_Union[Tensor, _Mapping]] = ..., values: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Sequences(_message.Message):
    __slots__ = ("step", "obs", "actions", "logp_old", "values_old", "advantages", "returns", "mask", "action_mask")
    STEP_FIELD_NUMBER: _ClassVar[int]
    OBS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    LOGP_OLD_FIELD_NUMBER: _ClassVar[int]
    VALUES_OLD_FIELD_NUMBER: _ClassVar[int]
    ADVANTAGES_FIELD_NUMBER: _ClassVar[int]
    RETURNS_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    ACTION_MASK_FIELD_NUMBER: _ClassVar[int]
    step: int
    obs: Tensor
    actions: Tensor
    logp_old: Tensor
    values_old: Tensor
    advantages: Tensor
    returns: Tensor
    mask: Tensor
    action_mask: Tensor
    def __init__(self, step: _Optional[int] = ..., obs: _Optional[_Union[Tensor, _Mapping]] = ..., actions: _Optional[_Union[Tensor, _Mapping]] = ..., logp_old: _Optional[_Union[Tensor, _Mapping]] = ..., values_old: _Optional[_Union[Tensor, _Mapping]] = ..., advantages: _Optional[_Union[Tensor, _Mapping]] = ..., returns: _Optional[_Union[Tensor, _Mapping]] = ..., mask: _Optional[_Union[Tensor, _Mapping]] = ..., action_mask: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Loss(_message.Message):
    __slots__ = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "grad_norm")
    POLICY_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALUE_LOSS_FIELD_NUMBER: _ClassVar[int]
    ENTROPY_FIELD_NUMBER: _ClassVar[int]
    APPROX_KL_FIELD_NUMBER: _ClassVar[int]
    CLIP_FRACTION_FIELD_NUMBER: _ClassVar[int]
    GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    grad_norm: float
    def __init__(self, policy_loss: _Optional[float] = ..., value_loss: _Optional[float] = ..., entropy: _Optional[float] = ..., approx_kl: _Optional[float] = ..., clip_fraction: _Optional[float] = ..., grad_norm: _Optional[float] = ...) -> None: ...

class Params(_message.Message):
    __slots__ = ("tensors", "optimizer", "version")
    class TensorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
    class OptimizerEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.MessageMap[str, Tensor]
    optimizer: _containers.MessageMap[str, Tensor]
    version: int
    def __init__(self, tensors: _Optional[_Mapping[str, Tensor]] = ..., optimizer: _Optional[_Mapping[str, Tensor]] = ..., version: _Optional[int] = ...) -> None: ...
