// An instance's progress within CREATING (an image pull's bytes): the local reason always has the
// latest; reports (each an MQTT message to the cluster) go out at most once per PROGRESS_EVERY_MS,
// the latest step once the interval is over, and none after the next transition. Fake runtime and
// clock: no containerd, no waiting.
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { Instance, PROGRESS_EVERY_MS } from '../../../orchestrator/worker/instance.ts';
import { Runtimes, type InstanceRuntime, type ProgressReport } from '../../../orchestrator/worker/runtime/types.ts';
import type { Sandbox } from '../../../orchestrator/worker/runtime/sandbox.ts';
import { NoNetwork } from '../../../orchestrator/worker/net-seam.ts';
import { memoryLogger } from '../../../orchestrator/protocol/log.ts';
import type { Transition } from '../../../orchestrator/protocol/instance-states.ts';

test('pull progress: reported at most once a second, the latest step last, nothing after RUNNING', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  try {
    let report: ProgressReport = () => {};
    let pulled = (): void => {};
    const sandbox = { netnsName: (k: string) => `ns-${k}`, kill: async () => {}, teardown: async () => {}, removeDir: () => {}, leftovers: () => [] } as unknown as Sandbox;
    const runtime: InstanceRuntime = {
      kind: 'container', sandbox,
      prepare: async (_k, _s, progress) => {
        report = progress!;
        await new Promise<void>((r) => (pulled = r));
        return { netns: 'ns' };
      },
      start: async () => ({ pid: 42, exited: new Promise(() => {}) }),
      adopt: async () => undefined, kill: async () => {}, teardown: async () => {}, leftovers: async () => [], close: async () => {},
    };
    const i = new Instance(
      { service_id: 's', instance_n: 0, name: { app: 'a', appns: 'b', svc: 'c', svcns: 'd' }, spec: { virtualization: 'container', code: 'busybox', cmd: [], memory: 0, vcpus: 0 } },
      new Runtimes(sandbox, [runtime]), new NoNetwork(), memoryLogger(),
    );
    const sent: Transition[] = [];
    i.on('transition', (t) => sent.push(t));
    const starting = i.start();
    await new Promise((r) => setImmediate(r));
    assert.equal(i.state, 'CREATING');
    const reasons = () => sent.filter((t) => t.reason.startsWith('pulling')).map((t) => t.reason);
    report('pulling busybox: 0.1 of 2.0 MB');
    report('pulling busybox: 0.2 of 2.0 MB');
    report('pulling busybox: 0.3 of 2.0 MB');
    assert.deepEqual(reasons(), ['pulling busybox: 0.1 of 2.0 MB'], 'the first at once, the next ones held');
    assert.equal(i.reason, 'pulling busybox: 0.3 of 2.0 MB', 'the local status has the latest');
    mock.timers.tick(PROGRESS_EVERY_MS);
    assert.deepEqual(reasons(), ['pulling busybox: 0.1 of 2.0 MB', 'pulling busybox: 0.3 of 2.0 MB'], 'the latest when the interval is over');
    report('pulling busybox: 1.9 of 2.0 MB');
    pulled();
    await starting;
    assert.equal(i.state, 'RUNNING');
    mock.timers.tick(PROGRESS_EVERY_MS * 2);
    assert.deepEqual(reasons(), ['pulling busybox: 0.1 of 2.0 MB', 'pulling busybox: 0.3 of 2.0 MB'], 'a held step is dropped by the transition');
    assert.equal(i.lifecycle.history.filter((t) => t.state === 'CREATING').length, 1, 'progress adds no history entry');
    i.detachFromDaemon();
  } finally {
    mock.timers.reset();
  }
});
