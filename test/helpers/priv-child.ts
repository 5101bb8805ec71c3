// Run by test/privileges.test.ts without capabilities (under setpriv): what works unprivileged must work,
// what needs CAP_BPF must fail with a typed error that names it, and nothing may leak or crash.
// Prints one JSON object with what happened.
import { readFileSync } from 'node:fs';
import { loadCollectionSpec, Collection, BpfMap, MapType, loadKernelBtf, TsbpfError } from '../../src/index.js';
import { ownedFdCount } from '../../src/syscall/fd.js';
import { SyscallError } from '../../src/syscall/errors.js';

const object = process.argv[2]!;
const out: Record<string, unknown> = {};
const caught = (f: () => unknown): Record<string, unknown> => {
  try {
    f();
    return { threw: false };
  } catch (e) {
    const s = e as SyscallError;
    return {
      threw: true,
      name: s.constructor?.name,
      tsbpf: e instanceof TsbpfError,
      errno: s.errno,
      missing: s.missingCapabilities,
      message: s.message,
    };
  }
};

out.capEff = /^CapEff:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
out.uid = process.getuid?.();
// Unprivileged: parsing an object, the kernel's BTF.
const spec = loadCollectionSpec(object);
out.spec = { programs: Object.keys(spec.programs).length, maps: Object.keys(spec.maps).length };
out.kernelBtfTypes = loadKernelBtf().length;
// Needs CAP_BPF: a collection, a map.
out.collection = caught(() => new Collection(spec));
out.map = caught(() => BpfMap.create({ name: 'priv', type: MapType.HASH, keySize: 4, valueSize: 4, maxEntries: 1 }));
out.fdsLeft = ownedFdCount();
process.stdout.write(JSON.stringify(out) + '\n');
