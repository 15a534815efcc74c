// Names of the service zone (SPEC §2.1), parsed from the right so that they are never ambiguous:
//   [<selector>.]<svc>.<svcns>.<app>.<appns>.<zone>    selector := rr | closest | any | <n>

export type Selector =
  | { kind: 'default' }
  | { kind: 'rr' }
  | { kind: 'closest' }
  | { kind: 'any' }
  | { kind: 'instance'; n: number };

export type ZoneName =
  | { kind: 'outside' }
  | { kind: 'apex' }
  | { kind: 'invalid' }
  /** `fullName` is `<app>.<appns>.<svc>.<svcns>`, the key of route queries. */
  | { kind: 'service'; fullName: string; selector: Selector };

const LABEL = /^[a-z0-9]{1,30}$/;
const NUMBER = /^(0|[1-9][0-9]{0,6})$/;

/** `name` lower-case without trailing dot; `zone` likewise (e.g. "canopy"). */
export function parseZoneName(name: string, zone: string): ZoneName {
  if (name === zone) return { kind: 'apex' };
  if (!name.endsWith(`.${zone}`)) return { kind: 'outside' };
  const labels = name.slice(0, -(zone.length + 1)).split('.');
  if (labels.length !== 4 && labels.length !== 5) return { kind: 'invalid' };
  const [svc, svcns, app, appns] = labels.slice(-4) as [string, string, string, string];
  if (![svc, svcns, app, appns].every((l) => LABEL.test(l))) return { kind: 'invalid' };
  let selector: Selector = { kind: 'default' };
  if (labels.length === 5) {
    const s = labels[0]!;
    if (s === 'rr' || s === 'closest' || s === 'any') selector = { kind: s };
    else if (NUMBER.test(s)) selector = { kind: 'instance', n: Number(s) };
    else return { kind: 'invalid' };
  }
  return { kind: 'service', fullName: `${app}.${appns}.${svc}.${svcns}`, selector };
}
