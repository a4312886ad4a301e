// A cluster card's worker groups (shown when the gateway has groups besides default): what each
// group is, where and how big its workers are, how many run, start or wait and why, how it scales
// (manual or adaptive) with a control per group, and how a notebook sends tasks to a group.
import type { TranslationBundle } from '@jupyterlab/translation';
import { Button, InputGroup } from '@jupyterlab/ui-components';
import React, { useState } from 'react';
import { errorText } from '../../components/format';
import { type ClustersModel, type GroupSummary, groupSubmitCode, parseAdaptRange, parseGroupCount } from './clusters-model';

interface GroupProps {
  cluster: string;
  group: GroupSummary;
  /** Scaling is possible (the cluster runs). */
  enabled: boolean;
  model: ClustersModel;
  trans: TranslationBundle;
}

type Mode = 'manual' | 'adaptive';

/** A small number input of the group's control. */
function CountInput(props: {
  id: string;
  label: string;
  value: string;
  placeholder?: string;
  invalid: boolean;
  disabled: boolean;
  onChange: (text: string) => void;
}): JSX.Element {
  return (
    <>
      <label htmlFor={props.id}>{props.label}</label>
      <InputGroup
        id={props.id}
        className="jp-AFGroups-count"
        type="number"
        min={0}
        step={1}
        value={props.value}
        placeholder={props.placeholder}
        disabled={props.disabled}
        aria-invalid={props.invalid ? true : undefined}
        onChange={(e) => props.onChange(e.target.value)}
      />
    </>
  );
}

/**
 * The group's scaling: Manual (a count; setting one turns adaptive scaling off) or Adaptive (a range
 * the gateway keeps the group in, following the demand of the tasks that need its resources).
 */
function GroupScale({ cluster, group, enabled, model, trans }: GroupProps): JSX.Element {
  // What the user chose and typed; until then the control follows the group as the stream reports it.
  const [choice, setChoice] = useState<Mode | null>(null);
  const [draft, setDraft] = useState<string | null>(null);
  const [range, setRange] = useState<{ minimum: string; maximum: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const mode: Mode = choice ?? (group.adaptive ? 'adaptive' : 'manual');
  const id = `af-group-${cluster}-${group.name}`;

  const text = draft ?? String(group.target);
  const parsed = parseGroupCount(text);
  const shownRange = range ?? {
    minimum: String(group.adaptive?.minimum ?? 0),
    maximum: group.adaptive ? String(group.adaptive.maximum ?? '') : String(group.limit ?? Math.max(1, group.target)),
  };
  const parsedRange = parseAdaptRange(shownRange.minimum, shownRange.maximum);
  const problem =
    mode === 'manual' ? (draft !== null && 'problem' in parsed ? parsed.problem : '') : range !== null && 'problem' in parsedRange ? parsedRange.problem : '';
  const ready = mode === 'manual' ? 'count' in parsed : !('problem' in parsedRange);

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    if (!ready || busy) return;
    setBusy(true);
    setError('');
    try {
      if (mode === 'manual' && 'count' in parsed) await model.scaleGroup(cluster, group.name, parsed.count);
      else if (mode === 'adaptive' && !('problem' in parsedRange)) await model.adaptGroup(cluster, group.name, parsedRange.minimum, parsedRange.maximum);
      setChoice(null);
      setDraft(null);
      setRange(null);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  const edit =
    <T,>(set: (v: T) => void) =>
    (v: T) => {
      set(v);
      setError('');
    };
  const off = !enabled || busy;
  return (
    <>
      <div className="jp-AFGroups-modes" role="radiogroup" aria-label={trans.__('How group %1 scales', group.name)}>
        {(['manual', 'adaptive'] as const).map((m) => (
          <label key={m} className={`jp-AFGroups-modeChoice${mode === m ? ' mod-selected' : ''}`}>
            <input type="radio" name={`${id}-mode`} value={m} checked={mode === m} disabled={off} onChange={() => edit(setChoice)(m)} />
            {m === 'manual' ? trans.__('Manual') : trans.__('Adaptive')}
          </label>
        ))}
      </div>
      <form className={`jp-AFGroups-scale mod-${mode}`} noValidate onSubmit={(e) => void submit(e)}>
        {mode === 'manual' ? (
          <CountInput id={id} label={trans.__('Workers')} value={text} invalid={!!problem} disabled={off} onChange={edit(setDraft)} />
        ) : (
          <>
            <CountInput
              id={`${id}-minimum`}
              label={trans.__('Min')}
              value={shownRange.minimum}
              invalid={!!problem}
              disabled={off}
              onChange={(v) => edit(setRange)({ ...shownRange, minimum: v })}
            />
            <CountInput
              id={`${id}-maximum`}
              label={trans.__('Max')}
              value={shownRange.maximum}
              placeholder="∞"
              invalid={!!problem}
              disabled={off}
              onChange={(v) => edit(setRange)({ ...shownRange, maximum: v })}
            />
          </>
        )}
        <Button
          type="submit"
          small
          className="jp-mod-styled jp-mod-accept"
          aria-label={mode === 'manual' ? trans.__('Scale group %1', group.name) : trans.__('Adapt group %1', group.name)}
          title={
            mode === 'manual'
              ? trans.__('Run this many workers in the group (adaptive scaling turns off)')
              : trans.__(
                  'Keep the group between min and max workers, following the demand of the tasks that need its resources (max empty: as the limits allow)',
                )
          }
          disabled={off || !ready}
        >
          {busy ? trans.__('Applying…') : mode === 'manual' ? trans.__('Scale') : trans.__('Adapt')}
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
      <div className={`jp-AFGroups-mode mod-${g.adaptive ? 'adaptive' : 'manual'}`} title={trans.__('How the group scales now')}>
        {g.mode}
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
      {g.adaptive && (
        <div className="jp-AFGroups-adaptive">
          {g.name === 'default'
            ? trans.__("Follows the scheduler's adaptive target; a count set with Manual turns adaptive scaling off.")
            : trans.__('Follows the demand of the tasks that need its resources; a count set with Manual turns adaptive scaling off.')}
        </div>
      )}
      <GroupScale {...props} />
    </li>
  );
}

export function GroupsSection(props: {
  cluster: string;
  groups: GroupSummary[];
  enabled: boolean;
  model: ClustersModel;
  trans: TranslationBundle;
}): JSX.Element {
  const { cluster, groups, enabled, model, trans } = props;
  const example = groups.map(groupSubmitCode).find(Boolean) ?? '';
  return (
    <section className="jp-AFGroups" aria-label={trans.__('Worker groups')}>
      <h3 className="jp-AFGroups-title">{trans.__('Worker groups')}</h3>
      <ul className="jp-AFGroups-list">
        {groups.map((g) => (
          <Group key={g.name} cluster={cluster} group={g} enabled={enabled} model={model} trans={trans} />
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
