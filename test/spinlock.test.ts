// BPF_F_LOCK lookups and updates on a map whose value holds a struct bpf_spin_lock.
import t from 'tap';
import { Btf, BpfMap, MapType, UpdateFlags } from '../src/index.js';
import { btfLoad } from '../src/syscall/index.js';

t.test('BPF_F_LOCK update and lookup on a spin-lock value', (t) => {
  // struct val { struct bpf_spin_lock lock; __u32 count; __u64 total; }
  const b = Btf.empty();
  const u32 = b.addType({ kind: 'int', name: 'unsigned int', size: 4, signed: false, char: false, bool: false, bitsOffset: 0, bits: 32 });
  const u64 = b.addType({ kind: 'int', name: 'unsigned long long', size: 8, signed: false, char: false, bool: false, bitsOffset: 0, bits: 64 });
  const lock = b.addType({ kind: 'struct', name: 'bpf_spin_lock', size: 4, members: [{ name: 'val', type: u32, bitOffset: 0, bitfieldSize: 0 }] });
  const val = b.addType({
    kind: 'struct', name: 'val', size: 16, members: [
      { name: 'lock', type: lock, bitOffset: 0, bitfieldSize: 0 },
      { name: 'count', type: u32, bitOffset: 32, bitfieldSize: 0 },
      { name: 'total', type: u64, bitOffset: 64, bitfieldSize: 0 },
    ],
  });
  const r = btfLoad(b.marshal(), 1 << 16);
  if (!('fd' in r)) throw new Error(`BTF_LOAD failed: ${r.errno} ${r.log}`);
  t.teardown(() => r.fd.close());
  const m = BpfMap.create({ name: 'spin', type: MapType.HASH, keySize: 4, valueSize: 16, maxEntries: 4, btfFd: r.fd.value, btfKeyTypeId: u32, btfValueTypeId: val });
  t.teardown(() => m.close());
  m.setTypes(b, u32, val);
  const v = Buffer.alloc(16);
  v.writeUInt32LE(0xffffffff, 0); // the lock word: the kernel must not copy it
  v.writeUInt32LE(7, 4);
  v.writeBigUInt64LE(99n, 8);
  m.update(1, v);
  v.writeUInt32LE(8, 4);
  m.update(1, v, UpdateFlags.LOCK);
  const got = m.lookup(1, UpdateFlags.LOCK)!;
  t.equal(got.readUInt32LE(4), 8, 'updated under the lock');
  t.equal(got.readBigUInt64LE(8), 99n);
  t.equal(got.readUInt32LE(0), 0, 'the spin lock itself is never copied to or from user space');
  t.same(m.get(1), { lock: { val: 0 }, count: 8, total: 99n }, 'decoded through BTF');
  t.end();
});
