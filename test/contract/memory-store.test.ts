/** The counter-store contract, run against the memory store. */
import { MemoryStore } from '../../src/store/memory.js';
import { storeContract } from './store-contract.js';

storeContract({ name: 'memory', make: async (rate) => new MemoryStore({ rate, maxEntries: 10_000 }) });
