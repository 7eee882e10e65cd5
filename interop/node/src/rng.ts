// A small seeded generator (sfc32), seeded from a few integers, for the initial weights and the
// minibatch order: an update is a function of the seed and the step, whatever process runs it.

function mix(h: number, word: number): number {
  h = Math.imul(h ^ word, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

// The 32-bit words of a non-negative integer below 2 ** 53.
function words(n: number): number[] {
  return [n >>> 0, Math.floor(n / 2 ** 32) >>> 0];
}

export type Rng = () => number; // uniform in [0, 1)

export function rng(...seeds: number[]): Rng {
  const w = seeds.flatMap(words);
  let a = mix(0x9e3779b9, w.length);
  let b = a;
  let c = a;
  let d = a;
  for (const x of w) [a, b, c, d] = [mix(a, x), mix(b ^ 0x1b873593, x), mix(c, ~x), mix(d, x + 1)];
  const next = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t / 2 ** 32;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}

export function normal(r: Rng): number {
  const u = 1 - r();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
}

export function permutation(n: number, r: Rng): number[] {
  const out = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
