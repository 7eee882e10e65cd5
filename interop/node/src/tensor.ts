// casi.v1.Tensor <-> typed arrays: raw little-endian, row-major bytes.
// Every decoding error names the field, what was expected and what was received.
import { invalid } from "./errors";

export const FLOAT32 = 1;
export const FLOAT64 = 2;
export const INT64 = 7;
export const BOOL = 9;

// casi.v1.DType value -> [name, bytes per element]
const DTYPES: Record<number, [string, number]> = {
  1: ["float32", 4],
  2: ["float64", 8],
  3: ["float16", 2],
  4: ["int8", 1],
  5: ["int16", 2],
  6: ["int32", 4],
  7: ["int64", 8],
  8: ["uint8", 1],
  9: ["bool", 1],
};
const MAX_DIMS = 8;
const MAX_ELEMENTS = 2 ** 31;

// A Tensor message as @grpc/proto-loader gives it (longs as numbers, bytes as a Buffer).
export interface TensorMsg {
  dtype: number;
  shape: number[];
  data: Buffer;
}

// A decoded tensor whose dtype, shape and byte length agree.
export interface Wire {
  dtype: number;
  shape: number[];
  data: Buffer;
}

export interface Expect {
  dtype?: number;
  ndim?: number;
  shape?: (number | null)[]; // null: any size
}

export function dtypeName(dtype: number): string {
  return DTYPES[dtype]?.[0] ?? `unknown dtype ${dtype}`;
}

export function shapeText(shape: (number | string | null)[]): string {
  return "[" + shape.map((n) => (n === null ? "*" : String(n))).join(", ") + "]";
}

export function describe(t: Wire): string {
  return `${dtypeName(t.dtype)} ${shapeText(t.shape)}`;
}

function product(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

// The checks of casi_proto.codec.from_tensor, in its order.
export function decode(t: TensorMsg | null | undefined, field: string, want: Expect = {}): Wire {
  if (!t || !t.dtype) {
    const what = want.dtype ? dtypeName(want.dtype) : "a tensor";
    throw invalid(`${field}: expected ${what}, got a missing tensor or DTYPE_UNSPECIFIED`);
  }
  if (!(t.dtype in DTYPES)) throw invalid(`${field}: dtype ${t.dtype} is not a casi.v1.DType`);
  if (t.shape.length > MAX_DIMS) {
    throw invalid(
      `${field}: expected at most ${MAX_DIMS} dimensions, got ${dtypeName(t.dtype)} with ${t.shape.length}`,
    );
  }
  const wire: Wire = { dtype: t.dtype, shape: t.shape.map(Number), data: t.data ?? Buffer.alloc(0) };
  checkExpected(wire, field, want);
  const needed = product(wire.shape) * DTYPES[wire.dtype][1];
  if (wire.data.length !== needed) {
    throw invalid(`${field}: ${wire.data.length} bytes for ${describe(wire)} needs ${needed}`);
  }
  if (product(wire.shape.map((n) => Math.max(n, 1))) > MAX_ELEMENTS) {
    throw invalid(
      `${field}: expected at most ${MAX_ELEMENTS} elements (empty dimensions counted as 1), got ${describe(wire)}`,
    );
  }
  if (wire.dtype === BOOL && wire.data.some((b) => b > 1)) {
    throw invalid(`${field}: expected bool bytes 0 or 1, got other bytes`);
  }
  return wire;
}

function checkExpected(t: Wire, field: string, want: Expect): void {
  if (want.dtype !== undefined && t.dtype !== want.dtype) {
    throw invalid(`${field}: expected dtype ${dtypeName(want.dtype)}, got ${describe(t)}`);
  }
  if (t.shape.some((n) => n < 0)) {
    throw invalid(`${field}: expected no negative dimension, got ${describe(t)}`);
  }
  const ndim = want.shape ? want.shape.length : want.ndim;
  if (ndim !== undefined && t.shape.length !== ndim) {
    throw invalid(`${field}: expected ${ndim} dimensions, got ${describe(t)}`);
  }
  const shape = want.shape;
  if (shape && shape.some((n, i) => n !== null && n !== t.shape[i])) {
    throw invalid(`${field}: expected shape ${shapeText(shape)}, got ${describe(t)}`);
  }
}

export function floats(t: Wire): Float32Array {
  const out = new Float32Array(t.data.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = t.data.readFloatLE(4 * i);
  return out;
}

export function ints(t: Wire): Float64Array {
  const out = new Float64Array(t.data.length / 8);
  for (let i = 0; i < out.length; i++) out[i] = Number(t.data.readBigInt64LE(8 * i));
  return out;
}

export function encode(values: ArrayLike<number>, shape: number[]): TensorMsg {
  const data = Buffer.alloc(values.length * 4);
  for (let i = 0; i < values.length; i++) data.writeFloatLE(values[i], 4 * i);
  return { dtype: FLOAT32, shape, data };
}
