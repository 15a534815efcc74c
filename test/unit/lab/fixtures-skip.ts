// Run by facility.test.ts through test/run.sh (not itself a *.test.ts): one test whose facility is missing.
import { test } from 'node:test';
import { unavailable } from '../../support/facility.ts';

test('a facility test', { skip: unavailable('pretend: no such facility') }, () => {});
