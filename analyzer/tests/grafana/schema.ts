// The shape imd's dashboards must have, from Grafana's own schema package
// (@grafana/schema): the dashboard, and for each panel type the dashboards
// use, that panel's options and field config. analyzer/tests/grafana.rs
// writes each dashboard as `const d: ImdDashboard = <its JSON>;` and runs
// `tsc --noEmit`: unknown keys, wrong types, missing required fields and
// values outside an enum are errors.
import type { AnnotationQuery, Dashboard, FieldConfigSource, Panel, RowPanel } from '@grafana/schema';
import type * as bargauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type * as heatmap from '@grafana/schema/dist/esm/raw/composable/heatmap/panelcfg/x/HeatmapPanelCfg_types.gen';
import type * as stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as statushistory from '@grafana/schema/dist/esm/raw/composable/statushistory/panelcfg/x/StatusHistoryPanelCfg_types.gen';
import type * as table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as timeseries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

// JSON holds a string enum's values, not the enum: accept the values.
type Json<T> = T extends string
  ? `${T}`
  : T extends (infer U)[]
    ? Json<U>[]
    : T extends object
      ? { [K in keyof T]: Json<T[K]> }
      : T;

// A panel of type `Ty` with options `O` and custom field config `F`.
type Typed<Ty extends string, O, F = Record<string, never>> = Omit<Json<Panel>, 'type' | 'options' | 'fieldConfig'> & {
  type: Ty;
  options?: Json<O>;
  fieldConfig?: {
    defaults: Omit<Json<FieldConfigSource['defaults']>, 'custom'> & { custom?: Json<F> };
    overrides: Json<FieldConfigSource['overrides']>;
  };
};

type ImdPanel =
  | Typed<'timeseries', timeseries.Options, timeseries.FieldConfig>
  | Typed<'stat', stat.Options>
  | Typed<'table', table.Options, table.FieldConfig>
  | Typed<'heatmap', heatmap.Options, heatmap.FieldConfig>
  | Typed<'bargauge', bargauge.Options>
  | Typed<'status-history', statushistory.Options, statushistory.FieldConfig>
  | Json<RowPanel>;

// Prometheus annotations keep the fields of Grafana's Prometheus annotation
// editor beside the generic ones, which the schema does not list.
type PrometheusAnnotation = Json<AnnotationQuery> & {
  expr?: string;
  step?: string;
  titleFormat?: string;
  textFormat?: string;
  tagKeys?: string;
  useValueForTime?: boolean;
};

export type ImdDashboard = Omit<Json<Dashboard>, 'panels' | 'annotations'> & {
  panels?: ImdPanel[];
  annotations?: { list?: PrometheusAnnotation[] };
};
