// The string table that Btf.marshal() writes. It is append-only: once a string
// has an offset, that offset never changes, so offsets handed out before
// marshal() (for example the file names of line info records) stay valid for
// every later marshal() of the same Btf.

import { BtfError } from '../errors.js';

/** Finds a string in a base BTF's string section; returns its offset or undefined. */
export type BaseStringLookup = (s: string) => number | undefined;

export class StringTableBuilder {
  readonly #offsets = new Map<string, number>();
  #buf = Buffer.alloc(4096);
  /** Bytes written to this (own) table so far. */
  #size = 0;
  /** Offset of the first own byte: 0 for standalone BTF, the base's string length for split BTF. */
  readonly #start: number;
  readonly #base?: BaseStringLookup;

  /**
   * @param start  offset that the first byte of this table will have (0 unless split BTF)
   * @param base   lookup into the base BTF's strings, for split BTF: strings the base already has are
   *               referenced there instead of being copied
   */
  constructor(start: number, base?: BaseStringLookup) {
    this.#start = start;
    this.#base = base;
    if (!base) {
      // A standalone string section must start with the empty string.
      this.#append('');
    }
  }

  /** Offset of `s`, adding it to the table when neither the base nor this table has it yet. */
  add(s: string): number {
    const known = this.#offsets.get(s);
    if (known !== undefined) return known;
    if (this.#base) {
      const inBase = this.#base(s);
      if (inBase !== undefined) {
        this.#offsets.set(s, inBase);
        return inBase;
      }
    }
    return this.#append(s);
  }

  #append(s: string): number {
    if (s.includes('\0')) throw new BtfError(`BTF string ${JSON.stringify(s)} contains a NUL byte`);
    const len = Buffer.byteLength(s, 'utf8') + 1;
    if (this.#size + len > this.#buf.length) {
      const bigger = Buffer.alloc(Math.max(this.#buf.length * 2, this.#size + len));
      this.#buf.copy(bigger, 0, 0, this.#size);
      this.#buf = bigger;
    }
    this.#buf.write(s, this.#size, 'utf8');
    this.#buf[this.#size + len - 1] = 0;
    const off = this.#start + this.#size;
    this.#size += len;
    this.#offsets.set(s, off);
    return off;
  }

  /** Length in bytes of the own table. */
  get byteLength(): number {
    return this.#size;
  }

  /** The own table's bytes. */
  toBuffer(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#size));
  }
}
