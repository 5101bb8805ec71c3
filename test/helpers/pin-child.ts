// Run by test/pin.test.ts in a child process: load OBJECT with pinPath DIR, run PROGRAM once, exit.
import { loadCollectionSpec, Collection } from '../../src/index.js';

const [object, dir, program] = process.argv.slice(2);
const c = new Collection(loadCollectionSpec(object), { pinPath: dir });
c.programs[program].run();
c.close();
