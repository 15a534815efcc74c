// Waiting for a worker Instance to reach one of some states, from its own transition events (no
// polling, no sleeps). Shared by the runtime tests.
import type { Instance } from '../../orchestrator/worker/instance.ts';
import type { InstanceState } from '../../orchestrator/protocol/instance-states.ts';

/** Resolves with the state reached; rejects after `ms` with the instance's whole history. */
export function until(i: Instance, states: InstanceState[], ms: number): Promise<InstanceState> {
  if (states.includes(i.state)) return Promise.resolve(i.state);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${i.key} stuck in ${i.state}, waiting for ${states.join('|')}: ${JSON.stringify(i.lifecycle.history)}`)), ms);
    const on = (): void => {
      if (!states.includes(i.state)) return;
      clearTimeout(timer);
      i.off('transition', on);
      resolve(i.state);
    };
    i.on('transition', on);
  });
}
