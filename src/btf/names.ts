// C-like spellings of BTF types for people to read (`u32`, `struct hist`, `const char *`, `char[16]`).
import type { Btf } from './btf.js';
import type { BtfType } from './types.js';

export interface TypeNameOptions {
  /** Keep const/volatile/restrict in the name (default true); flags generated from globals drop them. */
  qualifiers?: boolean;
}

const QUALIFIERS = new Set(['const', 'volatile', 'restrict']);

/**
 * A short C-like name for a type id. Never throws: an id outside the BTF reads `type#N`, and a chain deeper
 * than 16 (a malformed or cyclic BTF) ends in `...`, so it is safe on BTF that came from the kernel or a file.
 */
export function cTypeName(btf: Btf | undefined, id: number | undefined, o: TypeNameOptions = {}, depth = 0): string {
  if (!btf || id === undefined) return '';
  if (id === 0) return 'void';
  let t: BtfType;
  try {
    t = btf.type(id);
  } catch {
    return `type#${id}`;
  }
  if (depth > 16) return '...';
  const inner = (next: number): string => cTypeName(btf, next, o, depth + 1);
  switch (t.kind) {
    case 'int':
    case 'float':
    case 'typedef':
      return t.name;
    case 'struct':
    case 'union':
      return `${t.kind} ${t.name || '{...}'}`;
    case 'enum':
    case 'enum64':
      return `enum ${t.name || '{...}'}`;
    case 'fwd':
      return `${t.fwdKind} ${t.name}`;
    case 'ptr':
      return `${inner(t.type)} *`;
    case 'const':
    case 'volatile':
    case 'restrict':
      return o.qualifiers === false && QUALIFIERS.has(t.kind) ? inner(t.type) : `${t.kind} ${inner(t.type)}`;
    case 'type_tag':
      return inner(t.type);
    case 'array':
      return `${inner(t.type)}[${t.nelems}]`;
    case 'func_proto':
      return 'fn';
    case 'func':
    case 'var':
    case 'datasec':
    case 'decl_tag':
      return `${t.kind} ${t.name}`;
    default:
      return t.kind;
  }
}
