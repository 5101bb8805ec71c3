// Decoding records through BTF: `decode: 'event'` on a reader turns each record into a JS object with the
// codecs of src/btf/codec.ts. The type is looked up by name in the BTF of the object the map came from
// (Collection gives every map its object's BTF), or given directly as a Codec.

import type { BpfMap } from '../maps/map.js';
import { Codec, codecFor } from '../btf/codec.js';
import { TsbpfError } from '../errors.js';

/** A BTF type name (`'event'`, `'struct event'`, a typedef) in the map's object BTF, or a Codec. */
export type DecodeAs = string | Codec;

const PREFERRED = ['struct', 'union', 'typedef', 'int', 'enum', 'enum64', 'array'];

/** The Codec a reader of `map` uses for `as`; throws a TsbpfError that says what is missing. */
export function resolveCodec(map: BpfMap, as: DecodeAs, what: string): Codec {
  if (as instanceof Codec) return as;
  if (typeof as !== 'string' || as.trim() === '') throw new TypeError(`${what}: decode must be a BTF type name or a Codec`);
  const btf = map.btf;
  if (!btf) {
    throw new TsbpfError(`${what}: cannot decode as "${as}": the map has no object BTF (load it through a Collection, or pass a Codec)`);
  }
  const m = /^(struct|union|enum)\s+(\S+)$/.exec(as.trim());
  const name = m ? m[2] : as.trim();
  const found = btf.typesByName(name).filter((t) => (m ? t.kind === m[1] : PREFERRED.includes(t.kind)));
  found.sort((a, b) => PREFERRED.indexOf(a.kind) - PREFERRED.indexOf(b.kind));
  if (found.length === 0) throw new TsbpfError(`${what}: no BTF type "${as}" in the object's BTF`);
  return codecFor(btf, found[0].id);
}

/** Decode one record, refusing one too short for the type (the reader's check, not a RangeError). */
export function decodeRecord(codec: Codec, buf: Buffer, offset: number, length: number, what: string): unknown {
  if (length < codec.size) {
    throw new TsbpfError(`${what}: a ${length}-byte record is shorter than the decode type (${codec.size} bytes)`);
  }
  return codec.decode(buf, offset);
}
