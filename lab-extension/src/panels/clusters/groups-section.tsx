// A cluster card's worker groups (shown when the gateway has groups besides default): what each
// group is, where and how big its workers are, how many run, start or wait and why, a scale control
// per group, and how a notebook sends tasks to a group.
import type { TranslationBundle } from '@jupyterlab/translation';
import { Button, InputGroup } from '@jupyterlab/ui-components';
import React, { useState } from 'react';
import { errorText } from '../../components/format';
import { type ClustersModel, type GroupSummary, groupSubmitCode, parseGroupCount } from './clusters-model';

interface GroupProps {
  cluster: string;
  group: GroupSummary;
  /** Scaling is possible (the cluster runs). */
  enabled: boolean;
  /** The default group's adaptive range ("1 – 3") when the cluster scales adaptively, else empty. */
  adaptive: string;
  model: ClustersModel;
  trans: TranslationBundle;
}

function GroupScale({ cluster, group, enabled, model, trans }: GroupProps): JSX.Element {
  // What the user typed; until then the input shows the group's target as the stream reports it.
  const [draft, setDraft] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const id = `af-group-${cluster}-${group.name}`;
  const text = draft ?? String(group.target);
  const parsed = parseGroupCount(text);
  const problem = draft !== null && 'problem' in parsed ? parsed.problem : '';
  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    if (!('count' in parsed) || busy) return;
    setBusy(true);
    setError('');
    try {
      await model.scaleGroup(cluster, group.name, parsed.count);
      setDraft(null);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <form className="jp-AFGroups-scale" noValidate onSubmit={(e) => void submit(e)}>
        <label htmlFor={id}>{trans.__('Workers')}</label>
        <InputGroup
          id={id}
          className="jp-AFGroups-count"
          type="number"
          min={0}
          step={1}
          value={text}
          disabled={!enabled || busy}
          aria-invalid={problem ? true : undefined}
          onChange={(e) => {
            setDraft(e.target.value);
            setError('');
          }}
        />
        <Button
          type="submit"
          small
          className="jp-mod-styled jp-mod-accept"
          aria-label={trans.__('Scale group %1', group.name)}
          disabled={!enabled || busy || 'problem' in parsed}
        >
          {busy ? trans.__('Scaling…') : trans.__('Scale')}
        </Button>
      </form>
      {(problem || error) && (
        <div className="jp-AFClusters-error jp-AFGroups-error" role="alert">
          {problem || error}
        </div>
      )}
    </>
  );
}

function Group(props: GroupProps): JSX.Element {
  const { group: g, trans } = props;
  return (
    <li className="jp-AFGroups-group" data-group={g.name}>
      <div className="jp-AFGroups-head">
        <span className="jp-AFGroups-name">{g.name}</span>
        <span className="jp-AFGroups-backend" title={trans.__('Where its workers run')}>
          {g.backend}
        </span>
        <span className="jp-AFGroups-size" title={trans.__('Each worker of this group')}>
          {g.size}
        </span>
      </div>
      {g.description && <div className="jp-AFGroups-description">{g.description}</div>}
      {g.resources.length > 0 && (
        <div className="jp-AFGroups-resources" title={trans.__('Dask resources of its workers')}>
          {g.resources.map((r) => (
            <code key={r.label} className="jp-AFGroups-label">
              {r.label}: {r.amount}
            </code>
          ))}
        </div>
      )}
      <div className="jp-AFGroups-counts">
        <span className="jp-AFGroups-running">{g.counts}</span>
        {g.limit !== null && <span className="jp-AFGroups-limit">{trans.__('at most %1', String(g.limit))}</span>}
      </div>
      {g.pendingReasons.length > 0 && (
        <ul className="jp-AFGroups-reasons" aria-label={trans.__('Why workers wait')}>
          {g.pendingReasons.map((r) => (
            <li key={r}>{r}</li>
          ))}
        </ul>
      )}
      {g.message && <div className="jp-AFClusters-note jp-AFGroups-message">{g.message}</div>}
      {g.overflow && <div className="jp-AFGroups-overflow">{g.overflow}</div>}
      {g.name === 'default' && props.adaptive && (
        <div className="jp-AFGroups-adaptive">{trans.__('Adaptive (%1); a count set here turns adaptive scaling off.', props.adaptive)}</div>
      )}
      <GroupScale {...props} />
    </li>
  );
}

export function GroupsSection(props: {
  cluster: string;
  groups: GroupSummary[];
  enabled: boolean;
  adaptive: string;
  model: ClustersModel;
  trans: TranslationBundle;
}): JSX.Element {
  const { cluster, groups, enabled, adaptive, model, trans } = props;
  const example = groups.map(groupSubmitCode).find(Boolean) ?? '';
  return (
    <section className="jp-AFGroups" aria-label={trans.__('Worker groups')}>
      <h3 className="jp-AFGroups-title">{trans.__('Worker groups')}</h3>
      <ul className="jp-AFGroups-list">
        {groups.map((g) => (
          <Group key={g.name} cluster={cluster} group={g} enabled={enabled} adaptive={adaptive} model={model} trans={trans} />
        ))}
      </ul>
      {example && (
        <p className="jp-AFGroups-tip">
          {trans.__("Tip: to run a task on a group's workers, name its resource label from a notebook:")} <code>{example}</code>
        </p>
      )}
    </section>
  );
}
