// Rucio's own row shapes as the gateway passes them through (the parts the panel reads).

/** A search result (`long=1`). */
export interface RucioDid {
  scope: string;
  name: string;
  did_type: 'CONTAINER' | 'DATASET' | 'FILE' | string;
  bytes: number | null;
  length: number | null;
}

/** A DID's details (`GET dids/<scope>/<name>`). */
export interface RucioDidInfo {
  scope: string;
  name: string;
  type: 'CONTAINER' | 'DATASET' | 'FILE' | string;
  account?: string;
  open?: boolean;
  length?: number | null;
  bytes?: number | null;
}

/** What a container or dataset holds. */
export interface RucioContentRow {
  scope: string;
  name: string;
  type: 'CONTAINER' | 'DATASET' | 'FILE' | string;
  bytes: number | null;
  adler32?: string | null;
}

/** A file of a dataset. */
export interface RucioFile {
  scope: string;
  name: string;
  bytes: number;
  adler32: string | null;
  md5?: string | null;
  guid?: string | null;
  events?: number | null;
}

export interface RucioPfnInfo {
  rse: string;
  rse_id?: string;
  type?: string;
  domain?: string;
  priority?: number;
}

/** One file's replicas: its PFNs (for the requested schemes) and the RSEs holding it. */
export interface RucioReplica {
  scope: string;
  name: string;
  bytes: number;
  adler32: string | null;
  pfns: Record<string, RucioPfnInfo>;
  rses: Record<string, string[]>;
  states?: Record<string, string>;
}

/** A replication rule and its state. */
export interface RucioRule {
  id: string;
  scope: string;
  name: string;
  account: string;
  rse_expression: string;
  state: 'OK' | 'REPLICATING' | 'STUCK' | 'SUSPENDED' | 'WAITING_APPROVAL' | 'INJECT' | string;
  locks_ok_cnt: number;
  locks_replicating_cnt: number;
  locks_stuck_cnt: number;
  expires_at: string | null;
  error?: string | null;
}

export interface RucioRuleCreated {
  rule_ids: string[];
}

export interface RucioRegisterResult {
  dataset: { scope: string; name: string };
  created: boolean;
  files: number;
  rse: string;
}

export type RucioSearchType = 'all' | 'collection' | 'container' | 'dataset' | 'file';
