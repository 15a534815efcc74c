import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCidr, parseIp } from '../../../orchestrator/descriptor/ip.ts';
import { distanceKm, parseLocation } from '../../../orchestrator/descriptor/location.ts';
import { formatPorts, parsePorts } from '../../../orchestrator/descriptor/ports.ts';
import { validateDescriptor, validateMicroservice, type ValidationContext } from '../../../orchestrator/descriptor/validate.ts';
import { isValidName, nameProblem, normalizeName, serviceFullName, instanceFullName } from '../../../orchestrator/names.ts';
import { SLA_FIXTURES as FIXTURES } from '../../../harness/fixtures.ts';

const ctx: ValidationContext = { serviceRangeV4: parseCidr('10.30.0.0/16'), serviceRangeV6: parseCidr('fdc0:30::/32'), applicationIds: 'empty' };

test('names: ^[a-z0-9]{1,30}$, case-insensitive, stored lower-case', () => {
  assert.ok(isValidName('Web01'));
  assert.equal(normalizeName('Web01'), 'web01');
  assert.match(nameProblem('a'.repeat(31)) ?? '', /at most 30/);
  assert.match(nameProblem('') ?? '', /empty/);
  assert.match(nameProblem('a-b') ?? '', /only letters/);
  assert.match(nameProblem(7) ?? '', /string/);
  assert.throws(() => normalizeName('a b'));
  assert.equal(serviceFullName('a', 'ans', 's', 'sns'), 'a.ans.s.sns');
  assert.equal(instanceFullName('a', 'ans', 's', 'sns', 2), 'a.ans.s.sns.instance.2');
});

test('ports: host[:container][/tcp|udp];…', () => {
  assert.deepEqual(parsePorts('9080'), [{ host: 9080, container: 9080, protocol: 'tcp' }]);
  assert.deepEqual(parsePorts('6080:60/tcp;53:53/UDP;'), [{ host: 6080, container: 60, protocol: 'tcp' }, { host: 53, container: 53, protocol: 'udp' }]);
  assert.deepEqual(parsePorts(''), []);
  assert.equal(formatPorts(parsePorts('80;81:8081/udp')), '80:80/tcp;81:8081/udp');
  assert.throws(() => parsePorts('80;80'), /mapped twice/);
  assert.ok(parsePorts('80/tcp;80/udp').length === 2, 'same port on both protocols is fine');
  assert.throws(() => parsePorts('65536'), /outside 1-65535/);
  assert.throws(() => parsePorts(';80'), /entry 1/);
});

test('locations and distances', () => {
  assert.deepEqual(parseLocation('48.1,11.5'), { lat: 48.1, long: 11.5, radius: 0 });
  assert.deepEqual(parseLocation('48.1, 11.5, 20'), { lat: 48.1, long: 11.5, radius: 20 });
  assert.equal(parseLocation('48.1,11.5,20', false), null);
  assert.equal(parseLocation('Munich'), null);
  assert.equal(parseLocation('-91,0'), null);
  const d = distanceKm({ lat: 48.137, long: 11.575 }, { lat: 52.52, long: 13.405 });
  assert.ok(d > 495 && d < 510, `Munich–Berlin ${d} km`);
});

test('addresses parse strictly and print canonically', () => {
  assert.equal(parseIp('10.30.1.1')?.family, 4);
  assert.equal(parseIp('10.30.01.1'), null);
  assert.equal(parseIp('FDC0:0030::0001')?.text, 'fdc0:30::1');
  assert.equal(parseIp('fdc0::1/64'), null);
  assert.equal(parseCidr('10.30.7.9/16').text, '10.30.0.0/16');
  assert.throws(() => parseCidr('10.30.0.0/33'));
});

test('every fixture validates as it is', () => {
  for (const f of readdirSync(FIXTURES).filter((x) => x.endsWith('.json'))) {
    const r = validateDescriptor(JSON.parse(readFileSync(join(FIXTURES, f), 'utf8')), ctx);
    assert.ok(r.ok, `${f}: ${JSON.stringify(r.ok ? null : r.errors)}`);
  }
});

test('loose Oakestra numbers are read; unknown fields are dropped', () => {
  const r = validateDescriptor({
    sla_version: 'v2.0', customerID: 'x', extra: true,
    applications: [{ application_name: 'A', application_namespace: 'b', microservices: [{
      microservice_name: 'S', microservice_namespace: 'n', virtualization: 'process', cmd: ['x'], memory: '128', vcpus: '0.5', vgpus: '1', port: 8080, state: '', added_files: [],
    }] }],
  }, ctx);
  assert.ok(r.ok);
  const ms = r.value.applications[0]!.microservices[0]!;
  assert.equal(ms.memory, 128);
  assert.equal(ms.vcpus, 0.5);
  assert.equal(ms.vgpus, 1);
  assert.equal(ms.port, '8080:8080/tcp');
  assert.equal(ms.microservice_name, 's');
  assert.ok(!('state' in ms));
});

test('shape errors are 400, meaning errors 422, each with its path', () => {
  const shape = validateDescriptor({ sla_version: 'v2.0', applications: [{ application_name: 1 }] }, ctx);
  assert.ok(!shape.ok && shape.status === 400);
  assert.deepEqual(shape.errors.map((e) => e.path).sort(), ['/applications/0/application_name', '/applications/0/application_namespace', '/applications/0/microservices']);
  const meaning = validateDescriptor({ sla_version: 'v2.0', applications: [{ application_name: 'a-b', application_namespace: 'n', microservices: [] }] }, ctx);
  assert.ok(!meaning.ok && meaning.status === 422);
  assert.deepEqual(meaning.errors.map((e) => e.path), ['/applications/0/application_name']);
});

test('taken addresses and unknown connectivity targets come from the context', () => {
  const ms = { microservice_name: 's', microservice_namespace: 'n', virtualization: 'process', cmd: ['x'], addresses: { rr_ip: '10.30.5.5' },
    connectivity: [{ target_microservice_id: 'abc', con_constraints: [{ type: 'geo', threshold: 10 }] }] };
  const free = validateMicroservice(ms, { ...ctx, addressTaken: () => false, serviceExists: (id) => id === 'abc' });
  assert.ok(free.ok);
  const taken = validateMicroservice(ms, { ...ctx, addressTaken: (ip) => ip === '10.30.5.5', serviceExists: () => false });
  assert.ok(!taken.ok);
  assert.deepEqual(taken.errors.map((e) => e.path), ['/connectivity/0/target_microservice_id', '/addresses/rr_ip']);
});

test('a flood of errors is capped', () => {
  const many = Array.from({ length: 128 }, () => ({ microservice_name: 1 }));
  const r = validateDescriptor({ sla_version: 'v2.0', applications: [{ application_name: 'a', application_namespace: 'b', microservices: many }] }, ctx);
  assert.ok(!r.ok && r.errors.length <= 50);
});

const twoServices = (second: Record<string, unknown>) => ({
  sla_version: 'v2.0', customerID: 'x',
  applications: [{ applicationID: '', application_name: 'a', application_namespace: 'b', microservices: [
    { microserviceID: '', microservice_name: 'one', microservice_namespace: 'n', virtualization: 'process', cmd: ['x'] },
    { microserviceID: '', microservice_name: 'two', microservice_namespace: 'n', virtualization: 'process', cmd: ['x'], ...second },
  ] }],
});

test('a microserviceID in a new application must be empty: one naming any service is rejected at its path', () => {
  const r = validateDescriptor(twoServices({ microserviceID: '0123456789abcdef01234567' }), { ...ctx, serviceExists: () => true });
  assert.ok(!r.ok && r.status === 422);
  assert.deepEqual(r.errors.map((e) => e.path), ['/applications/0/microservices/1/microserviceID']);
  assert.match(r.errors[0]!.message, /must be empty for a new service/);
  assert.ok(validateDescriptor(twoServices({ microserviceID: '' }), ctx).ok);
});

test('a microservice being edited may carry its own id, and no other', () => {
  const ms = { microserviceID: 'svc1', microservice_name: 's', microservice_namespace: 'n', virtualization: 'process', cmd: ['x'] };
  assert.ok(validateMicroservice(ms, { ...ctx, editingServiceId: 'svc1' }).ok);
  assert.ok(validateMicroservice({ ...ms, microserviceID: '' }, { ...ctx, editingServiceId: 'svc1' }).ok);
  const other = validateMicroservice({ ...ms, microserviceID: 'svc2' }, { ...ctx, editingServiceId: 'svc1' });
  assert.ok(!other.ok);
  assert.deepEqual(other.errors.map((e) => [e.path, e.message]), [['/microserviceID', 'must be empty or this service\'s id svc1, got "svc2"']]);
});

test('memory "100" is read as 100 MB; a bad memory is rejected naming memory, at its JSON path', () => {
  const ok = validateDescriptor(twoServices({ memory: '100' }), ctx);
  assert.ok(ok.ok);
  assert.equal(ok.value.applications[0]!.microservices[1]!.memory, 100);
  for (const bad of ['100MB', ' 100', '-5', '', 'lots']) {
    const r = validateDescriptor(twoServices({ memory: bad }), ctx);
    assert.ok(!r.ok, JSON.stringify(bad));
    assert.deepEqual(r.errors.map((e) => e.path), ['/applications/0/microservices/1/memory'], JSON.stringify(bad));
    assert.match(r.errors[0]!.message, /^memory must be a non-negative number/);
  }
  const r = validateDescriptor(twoServices({ memory: -1 }), ctx);
  assert.ok(!r.ok);
  assert.deepEqual(r.errors.map((e) => e.path), ['/applications/0/microservices/1/memory']);
});

test('every rejection names the JSON path of its field', () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ vcpus: 'two' }, '/applications/0/microservices/1/vcpus'],
    [{ virtualization: 'vm' }, '/applications/0/microservices/1/virtualization'],
    [{ port: '99999' }, '/applications/0/microservices/1/port'],
    [{ environment: ['=x'] }, '/applications/0/microservices/1/environment/0'],
    [{ constraints: [{ type: 'geo', location: 'x', threshold: 1 }] }, '/applications/0/microservices/1/constraints/0/location'],
    [{ addresses: { rr_ip: '1.2.3.4' } }, '/applications/0/microservices/1/addresses/rr_ip'],
    [{ microserviceID: 'x' }, '/applications/0/microservices/1/microserviceID'],
    [{ memory: 1e12 }, '/applications/0/microservices/1/memory'],
  ];
  for (const [field, path] of cases) {
    const r = validateDescriptor(twoServices(field), ctx);
    assert.ok(!r.ok, JSON.stringify(field));
    assert.ok(r.errors.length > 0 && r.errors.every((e) => e.path.startsWith('/applications/0/microservices/1/')), `${JSON.stringify(field)}: ${JSON.stringify(r.errors)}`);
    assert.ok(r.errors.some((e) => e.path === path), `${JSON.stringify(field)}: ${JSON.stringify(r.errors)}`);
  }
});
