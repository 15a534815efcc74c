// Applications → services → instances. The tree on the left, the selected service on the right with
// its addresses and DNS names, its instances (state, worker, cluster, addresses), scaling and
// undeploying; a selected instance adds its timeline and its logs.
import { useState } from 'preact/hooks';
import { Confirm, type ConfirmRequest } from './confirm.tsx';
import { useLive } from './live.tsx';
import { Logs } from './logs.tsx';
import { isLive, type Application, type Instance, type Service } from './types.ts';

const ZONE = 'canopy';

/** SPEC §2.1: <selector>.<svc>.<svcns>.<app>.<appns>.canopy */
function dnsBase(app: Application | undefined, s: Service): string {
  return `${s.microservice_name}.${s.microservice_namespace}.${app?.application_name ?? '?'}.${app?.application_namespace ?? '?'}.${ZONE}`;
}

export function StateBadge({ state }: { state: string }) {
  return <span class={`state s-${state.toLowerCase()}`}>{state}</span>;
}

function Tree({ apps, services, selected }: { apps: Application[]; services: Map<string, Service>; selected?: string }) {
  if (apps.length === 0) return <p class="muted">No applications yet. <a href="#/deploy">Deploy a descriptor</a>.</p>;
  return (
    <ul class="tree">
      {apps.map((a) => (
        <li key={a.applicationID}>
          <span class="app-name">{a.application_name}.{a.application_namespace}</span>
          <ul>
            {a.microservices.map((m) => {
              const s = services.get(m.microserviceID);
              const live = s ? s.instances.filter(isLive) : [];
              const running = live.filter((i) => i.state === 'RUNNING').length;
              return (
                <li key={m.microserviceID}>
                  <a href={`#/apps/${m.microserviceID}`} aria-current={selected === m.microserviceID ? 'true' : undefined} data-service={m.microservice_name}>
                    {m.microservice_name}.{m.microservice_namespace}
                    <span class="count" aria-label={`${running} of ${live.length} running`}>{running}/{live.length}</span>
                  </a>
                </li>
              );
            })}
          </ul>
        </li>
      ))}
    </ul>
  );
}

function Timeline({ instance }: { instance: Instance }) {
  return (
    <ol class="timeline" aria-label={`Transitions of instance ${instance.instance_n}`}>
      {[...instance.history].reverse().map((h, k) => (
        <li key={k}>
          <time dateTime={h.ts}>{new Date(h.ts).toLocaleTimeString()}</time> <StateBadge state={h.state} /> <span>{h.reason}</span>
        </li>
      ))}
    </ol>
  );
}

function ServiceView({ service, app, instanceN }: { service: Service; app?: Application; instanceN?: number }) {
  const live = useLive();
  const [confirm, setConfirm] = useState<ConfirmRequest | null>(null);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const current = service.instances.filter(isLive);
  const base = dnsBase(app, service);
  const sid = encodeURIComponent(service.microserviceID);
  const act = async (what: string, fn: () => Promise<unknown>) => {
    setBusy(true);
    setError('');
    try {
      await fn();
      live.announce(what);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  const scaleUp = () => act(`${service.microservice_name}: one more instance requested`, () => live.api('POST', `/service/${sid}/instance`));
  const scaleDown = () => {
    const last = [...current].sort((a, b) => b.instance_n - a.instance_n)[0];
    if (!last) return;
    void act(`${service.microservice_name}: instance ${last.instance_n} undeployed`, () => live.api('DELETE', `/service/${sid}/instance/${last.instance_n}`));
  };
  const selected = instanceN === undefined ? undefined : service.instances.find((i) => i.instance_n === instanceN);
  return (
    <section aria-labelledby="svc-title" class="service">
      <div class="title-row">
        <h1 id="svc-title">{service.name}</h1>
        <div class="row">
          <span class="scale" role="group" aria-label="Scale">
            <button type="button" onClick={scaleDown} disabled={busy || current.length === 0} aria-label={`Scale ${service.microservice_name} down`}>−</button>
            <output aria-label="Instances" data-testid="scale-count">{current.length}</output>
            <button type="button" onClick={() => void scaleUp()} disabled={busy} aria-label={`Scale ${service.microservice_name} up`}>+</button>
          </span>
          <button type="button" class="danger" onClick={() => setConfirm({
            title: `Undeploy service ${service.microservice_name}?`,
            body: `All ${current.length} instances of ${service.name} stop and the service is deleted.`,
            action: 'Undeploy service',
            run: async () => {
              await live.api('DELETE', `/service/${sid}`);
              live.announce(`service ${service.microservice_name} undeployed`);
              location.hash = '#/apps';
            },
          })}>Undeploy service</button>
          {app && <button type="button" class="danger secondary" onClick={() => setConfirm({
            title: `Undeploy application ${app.application_name}?`,
            body: `Every service of ${app.application_name}.${app.application_namespace} stops and the application is deleted.`,
            action: 'Undeploy application',
            run: async () => {
              await live.api('DELETE', `/application/${encodeURIComponent(app.applicationID)}`);
              live.announce(`application ${app.application_name} undeployed`);
              location.hash = '#/apps';
            },
          })}>Undeploy application</button>}
        </div>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      <dl class="facts">
        <dt>Virtualization</dt><dd>{service.virtualization}, {service.vcpus} vCPU, {service.memory} MB</dd>
        <dt>Round-robin IP</dt><dd><code>{service.rr_ip}</code> <code>{service.rr_ip_v6}</code></dd>
        <dt>Closest IP</dt><dd><code>{service.closest_ip}</code> <code>{service.closest_ip_v6}</code></dd>
        <dt>DNS names</dt><dd><code>{base}</code> <code>rr.{base}</code> <code>closest.{base}</code></dd>
      </dl>
      <h2>Instances</h2>
      <div class="table-wrap">
        <table>
          <thead>
            <tr><th scope="col">#</th><th scope="col">State</th><th scope="col">Worker</th><th scope="col">Cluster</th><th scope="col">Instance IP</th><th scope="col" class="col-dns">DNS name</th><th scope="col">Reason</th><th scope="col"><span class="sr-only">Actions</span></th></tr>
          </thead>
          <tbody>
            {service.instances.map((i) => (
              <tr key={i.instance_n} data-instance={i.instance_n} data-state={i.state} aria-selected={i.instance_n === instanceN ? 'true' : undefined}>
                <td><a href={`#/apps/${service.microserviceID}/${i.instance_n}`} aria-label={`Instance ${i.instance_n}: details and logs`}>{i.instance_n}</a></td>
                <td><StateBadge state={i.state} /></td>
                <td>{i.worker_id ?? '—'}</td>
                <td>{i.cluster_name ?? '—'}</td>
                <td><code>{i.instance_ip}</code><br /><code>{i.instance_ip_v6}</code></td>
                <td class="col-dns"><code>{i.instance_n}.{base}</code></td>
                <td class="reason">{i.reason}</td>
                <td>{isLive(i) && <button type="button" class="secondary small" onClick={() => setConfirm({
                  title: `Undeploy instance ${i.instance_n}?`,
                  body: `${service.name}#${i.instance_n} stops on ${i.worker_id ?? 'no worker'}.`,
                  action: 'Undeploy instance',
                  run: async () => {
                    await live.api('DELETE', `/service/${sid}/instance/${i.instance_n}`);
                    live.announce(`instance ${i.instance_n} undeployed`);
                  },
                })}>Undeploy</button>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {selected && (
        <div class="instance-detail">
          <section aria-labelledby="tl-title">
            <h2 id="tl-title">Instance {selected.instance_n}: timeline</h2>
            <Timeline instance={selected} />
          </section>
          <section aria-labelledby="logs-title">
            <h2 id="logs-title">Instance {selected.instance_n}: logs</h2>
            <Logs key={`${service.microserviceID}/${selected.instance_n}`} serviceId={service.microserviceID} n={selected.instance_n} />
          </section>
        </div>
      )}
      <Confirm request={confirm} onDone={(err) => {
        setConfirm(null);
        if (err) setError(err);
      }} />
    </section>
  );
}

export function Applications({ selected, instance }: { selected?: string; instance?: string }) {
  const live = useLive();
  if (!live.apps) return <p aria-busy="true">Loading…</p>;
  const service = selected ? live.services.get(selected) : undefined;
  const app = service ? live.apps.find((a) => a.applicationID === service.applicationID) : undefined;
  return (
    <div class="split">
      <nav class="side" aria-label="Applications and services">
        <h2>Applications</h2>
        <Tree apps={live.apps} services={live.services} selected={selected} />
      </nav>
      <div class="pane">
        {live.error && <p class="error" role="alert">{live.error}</p>}
        {service ? <ServiceView service={service} app={app} instanceN={instance === undefined ? undefined : Number(instance)} />
          : <p class="muted">{selected ? 'This service is gone.' : 'Choose a service.'}</p>}
      </div>
    </div>
  );
}
