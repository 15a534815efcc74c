// The deployment descriptor (SPEC §4) after validation: Oakestra's v2.0 SLA with numbers as numbers,
// names lower-cased, optional fields filled in. Fields Canopy does not use (Oakestra's `state`,
// `added_files`, …) are accepted on input and dropped here.

export type Virtualization = 'container' | 'process';

export interface PinnedAddresses {
  rr_ip?: string;
  rr_ip_v6?: string;
  closest_ip?: string;
  closest_ip_v6?: string;
}

export type Constraint =
  | { type: 'direct'; cluster?: string; node?: string }
  | { type: 'clusters'; allowed: string[] }
  | { type: 'geo'; location: string; threshold: number }
  | { type: 'latency'; location?: string; area?: string; target?: string; threshold: number }
  | { type: 'anti_affinity' }
  | { type: 'arch'; arch: string[] };

export interface ConnectivityConstraint {
  type: 'latency' | 'geo';
  threshold: number;
}

export interface Connectivity {
  /** An existing service's id, or the microservice_name of a sibling in the same application. */
  target_microservice_id: string;
  con_constraints: ConnectivityConstraint[];
}

export interface Microservice {
  microserviceID: string;
  microservice_name: string;
  microservice_namespace: string;
  virtualization: Virtualization;
  code: string;
  cmd: string[];
  args: string[];
  environment: string[];
  /** MB */
  memory: number;
  vcpus: number;
  vgpus: number;
  vtpus: number;
  storage: number;
  bandwidth_in: number;
  bandwidth_out: number;
  /** `host:container[/tcp|udp];…` as given (see ports.ts), "" for none. */
  port: string;
  one_shot: boolean;
  addresses: PinnedAddresses;
  constraints: Constraint[];
  connectivity: Connectivity[];
}

export interface Application {
  applicationID: string;
  application_name: string;
  application_namespace: string;
  application_desc: string;
  microservices: Microservice[];
}

export interface Descriptor {
  sla_version: 'v2.0';
  customerID: string;
  applications: Application[];
}

export interface FieldError {
  /** JSON pointer of the offending field ("" for the whole body). */
  path: string;
  message: string;
}
