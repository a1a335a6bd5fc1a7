/**
 * Fast shape checks compiled from the zod schemas. A frame's shape is checked once per
 * inbound frame, so it must cost well under the `JSON.parse` that precedes it; zod's
 * `safeParse` costs a fixed ~0.2 µs (and builds an output object), as much as parsing a
 * small frame. The schemas stay the one source: this walks their definitions once, at
 * load, and builds plain predicates for the few kinds the protocol uses (objects, strings
 * with length checks and refinements, literals, optionals, unions, integers). A schema
 * with anything else is checked by zod itself. A property test holds each compiled check
 * to `safeParse` on arbitrary input.
 */
import type { z } from 'zod';

/** A compiled shape check: true exactly when `safeParse` would succeed. */
export type ShapeCheck = (value: unknown) => boolean;

interface Def {
  readonly type: string;
  readonly shape?: Record<string, { _zod: { def: Def } }>;
  readonly catchall?: { _zod: { def: Def } };
  readonly innerType?: { _zod: { def: Def } };
  readonly options?: readonly { _zod: { def: Def } }[];
  readonly values?: readonly unknown[];
  readonly format?: string;
  readonly checks?: readonly { _zod: { def: CheckDef } }[];
}

interface CheckDef {
  readonly check: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly value?: number;
  readonly inclusive?: boolean;
  readonly fn?: (value: unknown) => unknown;
}

class Unsupported extends Error {}

/** zod measures strings in code points. */
function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

function all(tests: ShapeCheck[]): ShapeCheck {
  if (tests.length === 0) return () => true;
  if (tests.length === 1) return tests[0] as ShapeCheck;
  return (v) => {
    for (let i = 0; i < tests.length; i++) if (!(tests[i] as ShapeCheck)(v)) return false;
    return true;
  };
}

function checksOf(def: Def, base: ShapeCheck, kind: 'string' | 'number'): ShapeCheck {
  const tests: ShapeCheck[] = [base];
  for (const c of def.checks ?? []) {
    const d = c._zod.def;
    if (kind === 'string' && d.check === 'min_length') {
      const min = d.minimum as number;
      tests.push((v) => (v as string).length >= min * 2 || codePoints(v as string) >= min);
    } else if (kind === 'string' && d.check === 'max_length') {
      const max = d.maximum as number;
      tests.push((v) => (v as string).length <= max || codePoints(v as string) <= max);
    } else if (kind === 'number' && (d.check === 'greater_than' || d.check === 'less_than')) {
      const bound = d.value as number;
      const above = d.check === 'greater_than';
      tests.push(d.inclusive ? (above ? (v) => (v as number) >= bound : (v) => (v as number) <= bound) : above ? (v) => (v as number) > bound : (v) => (v as number) < bound);
    } else if (d.check === 'custom' && typeof d.fn === 'function') {
      const fn = d.fn;
      tests.push((v) => Boolean(fn(v)));
    } else {
      throw new Unsupported(d.check);
    }
  }
  return all(tests);
}

function compileDef(def: Def): ShapeCheck {
  switch (def.type) {
    case 'string':
      return checksOf(def, (v) => typeof v === 'string', 'string');
    case 'number': {
      const base: ShapeCheck = def.format === 'safeint' ? (v) => typeof v === 'number' && Number.isSafeInteger(v) : def.format === undefined ? (v) => typeof v === 'number' && Number.isFinite(v) : unsupported(def.format);
      return checksOf(def, base, 'number');
    }
    case 'literal': {
      const values = def.values ?? [];
      return (v) => values.includes(v);
    }
    case 'optional': {
      const inner = compileDef((def.innerType as { _zod: { def: Def } })._zod.def);
      return (v) => v === undefined || inner(v);
    }
    case 'union': {
      const options = (def.options ?? []).map((o) => compileDef(o._zod.def));
      return (v) => options.some((o) => o(v));
    }
    case 'object': {
      if ((def.checks ?? []).length > 0) throw new Unsupported('object checks');
      const strict = def.catchall?._zod.def.type === 'never';
      if (def.catchall !== undefined && !strict) throw new Unsupported('catchall');
      return compileObject(Object.entries(def.shape ?? {}), strict);
    }
    default:
      throw new Unsupported(def.type);
  }
}

/**
 * An object check as generated code: each field is read by name at a call site of its own
 * (`v["room"]`), where a loop over the keys would make one megamorphic site that costs more
 * than parsing a small frame. Literals and unchecked strings are tested inline.
 */
function compileObject(shape: [string, { _zod: { def: Def } }][], strict: boolean): ShapeCheck {
  const tests: ShapeCheck[] = [];
  const terms = ['typeof v === "object"', 'v !== null', '!Array.isArray(v)'];
  for (const [key, schema] of shape) {
    const def = schema._zod.def;
    const read = `v[${JSON.stringify(key)}]`;
    const literal = def.type === 'literal' && def.values?.length === 1 ? def.values[0] : undefined;
    if (literal !== undefined && (typeof literal === 'string' || typeof literal === 'number' || typeof literal === 'boolean')) {
      terms.push(`${read} === ${JSON.stringify(literal)}`);
    } else if (def.type === 'string' && (def.checks ?? []).length === 0) {
      terms.push(`typeof ${read} === "string"`);
    } else {
      tests.push(compileDef(def));
      terms.push(`t[${tests.length - 1}](${read})`);
    }
  }
  const known = new Set(shape.map(([k]) => k));
  if (strict) terms.push('onlyKnown(v)');
  const onlyKnown = (v: Record<string, unknown>): boolean => {
    for (const key in v) if (!known.has(key)) return false;
    return true;
  };
  // The source is built from the schema's own keys (JSON-escaped) and nothing a client sends.
  return new Function('t', 'onlyKnown', `return function check(v) { return ${terms.join(' && ')}; };`)(tests, onlyKnown) as ShapeCheck;
}

function unsupported(what: string): never {
  throw new Unsupported(what);
}

/**
 * Compile `schema` into a plain predicate, or, when it uses a kind this compiler does not
 * know, return `safeParse` itself.
 */
export function compileShape(schema: z.ZodType): ShapeCheck {
  try {
    return compileDef((schema as unknown as { _zod: { def: Def } })._zod.def);
  } catch (err) {
    if (!(err instanceof Unsupported)) throw err;
    return (v) => schema.safeParse(v).success;
  }
}
