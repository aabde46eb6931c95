//! [`FunctionRegistry`]: ksqlDB function names mapped onto DataFusion
//! functions.
//!
//! Where a ksqlDB function means what a DataFusion built-in means, the
//! built-in serves under the ksqlDB name (`UCASE` is `upper`). Functions
//! whose ksqlDB semantics differ have their own UDFs, one module per
//! family: most scalars are row-wise ([`rowwise`]: [`string`], [`url`],
//! [`datetime`], [`json`], [`array`], [`map`], [`greatest`], [`geo`]);
//! [`math`] is vectorised; [`lambda`] holds `TRANSFORM`/`FILTER`/`REDUCE`
//! and [`table`] the table functions the planner turns into an `Explode`
//! operator. ksqlDB-only aggregates are UDAFs on DataFusion's accumulator
//! traits, retractable where ksqlDB aggregates tables with them
//! ([`collect`], [`by_offset`], [`topk`], [`histogram`], [`stddev`],
//! [`attr`], [`correlation`], [`sum_list`], [`count_distinct`]).
//! `ksql.functions.*` properties configure some of them at plan time.
//! [`docs`] describes every function, for `DESCRIBE FUNCTION` and the
//! generated reference.

pub mod array;
pub mod as_value;
pub mod attr;
pub mod by_offset;
pub mod collect;
pub mod correlation;
pub mod count_distinct;
pub mod datetime;
pub mod docs;
pub mod geo;
pub mod greatest;
pub mod histogram;
pub mod java_string;
pub mod json;
pub mod lambda;
pub mod map;
pub mod math;
pub mod rowwise;
pub mod stddev;
pub mod string;
pub mod sum_list;
pub mod table;
pub mod topk;
pub mod url;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::execution::SessionState;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use parking_lot::RwLock;

/// Built-in scalar functions whose DataFusion meaning matches ksqlDB's,
/// as (ksqlDB name, DataFusion name).
const SCALAR_ALIASES: &[(&str, &str)] = &[
    ("ABS", "abs"),
    ("CEIL", "ceil"),
    ("FLOOR", "floor"),
    ("SIGN", "signum"),
    ("UCASE", "upper"),
    ("LCASE", "lower"),
    ("LEN", "character_length"),
    ("CONCAT", "concat"),
    ("CONCAT_WS", "concat_ws"),
    ("REPLACE", "replace"),
    ("COALESCE", "coalesce"),
    ("IFNULL", "coalesce"),
    ("NULLIF", "nullif"),
    ("MD5", "md5"),
    ("RANDOM", "random"),
    ("UUID", "uuid"),
    ("MAP_KEYS", "map_keys"),
    ("MAP_VALUES", "map_values"),
];

/// Aggregates whose DataFusion meaning matches ksqlDB's.
const AGGREGATE_ALIASES: &[(&str, &str)] = &[
    ("COUNT", "count"),
    ("SUM", "sum"),
    ("MIN", "min"),
    ("MAX", "max"),
    ("AVG", "avg"),
    // Not in ksqlDB: DataFusion's t-digest percentile, for latency
    // percentiles over windows (`APPROX_PERCENTILE(latency_ms, 0.95)`).
    ("APPROX_PERCENTILE", "approx_percentile_cont"),
];

/// Functions under their ksqlDB names.
#[derive(Debug, Clone)]
pub struct FunctionRegistry {
    scalars: BTreeMap<String, Arc<ScalarUDF>>,
    aggregates: BTreeMap<String, Arc<AggregateUDF>>,
    /// DataFusion's own functions by their DataFusion names, for building
    /// expressions (`get_field`, `array_element`...).
    internal: std::collections::HashMap<String, Arc<ScalarUDF>>,
    /// Function settings from `ksql.functions.*` properties, shared with
    /// the context that sets them.
    settings: Arc<RwLock<FunctionSettings>>,
    /// For compiling lambda bodies while expressions are planned.
    session: Arc<SessionState>,
}

/// What `ksql.functions.*` properties configure; read when a query is
/// planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSettings {
    pub collect_list_limit: usize,
    pub collect_set_limit: usize,
}

impl Default for FunctionSettings {
    fn default() -> Self {
        FunctionSettings {
            collect_list_limit: collect::DEFAULT_LIMIT,
            collect_set_limit: collect::DEFAULT_LIMIT,
        }
    }
}

const COLLECT_LIST_LIMIT: &str = "ksql.functions.collect_list.limit";
const COLLECT_SET_LIMIT: &str = "ksql.functions.collect_set.limit";

impl FunctionRegistry {
    pub fn new(state: &SessionState) -> Self {
        let internal = state.scalar_functions().clone();
        let mut scalars: BTreeMap<String, Arc<ScalarUDF>> = SCALAR_ALIASES
            .iter()
            .filter_map(|(ksql, df)| internal.get(*df).map(|f| (ksql.to_string(), f.clone())))
            .collect();
        scalars.insert(
            "AS_VALUE".into(),
            Arc::new(ScalarUDF::from(as_value::AsValue::default())),
        );
        for op in math::MathOp::ALL {
            scalars.insert(
                op.name().to_uppercase(),
                Arc::new(ScalarUDF::from(math::DoubleMath::new(op))),
            );
        }
        for f in datetime::DateTimeFn::ALL {
            add_row(&mut scalars, f);
        }
        for f in string::StrFn::ALL {
            add_row(&mut scalars, f);
        }
        add_row(&mut scalars, geo::GeoDistance);
        for f in map::MapFn::ALL {
            add_row(&mut scalars, f);
        }
        for f in greatest::Extreme::ALL {
            add_row(&mut scalars, f);
        }
        for f in array::ArrayFn::ALL {
            add_row(&mut scalars, f);
        }
        for f in json::JsonFn::ALL {
            add_row(&mut scalars, f);
        }
        for f in table::TableFn::ALL {
            add_row(&mut scalars, f);
        }
        for f in url::UrlFn::ALL {
            add_row(&mut scalars, f);
        }
        for truncate in [false, true] {
            let udf = ScalarUDF::from(math::RoundTrunc::new(truncate));
            scalars.insert(udf.name().to_uppercase(), Arc::new(udf));
        }
        let aggregate_functions = state.aggregate_functions();
        let mut aggregates: BTreeMap<String, Arc<AggregateUDF>> = AGGREGATE_ALIASES
            .iter()
            .filter_map(|(ksql, df)| {
                aggregate_functions
                    .get(*df)
                    .map(|f| (ksql.to_string(), f.clone()))
            })
            .collect();
        for distinct in [false, true] {
            let udaf = AggregateUDF::from(topk::TopK::new(distinct));
            aggregates.insert(udaf.name().to_uppercase(), Arc::new(udaf));
            let udaf = AggregateUDF::from(collect::Collect::new(distinct, collect::DEFAULT_LIMIT));
            aggregates.insert(udaf.name().to_uppercase(), Arc::new(udaf));
        }
        for udaf in [
            AggregateUDF::from(histogram::Histogram::default()),
            AggregateUDF::from(stddev::Stddev::new(true)),
            AggregateUDF::from(stddev::Stddev::new(false)),
            AggregateUDF::from(sum_list::SumList::default()),
            AggregateUDF::from(count_distinct::CountDistinct::default()),
            AggregateUDF::from(attr::Attr::default()),
            AggregateUDF::from(correlation::Correlation::default()),
        ] {
            aggregates.insert(udaf.name().to_uppercase(), Arc::new(udaf));
        }
        for latest in [false, true] {
            let udaf = AggregateUDF::from(by_offset::ByOffset::new(latest));
            aggregates.insert(udaf.name().to_uppercase(), Arc::new(udaf));
        }
        FunctionRegistry {
            scalars,
            aggregates,
            internal,
            settings: Arc::default(),
            session: Arc::new(state.clone()),
        }
    }

    /// Applies a `ksql.functions.*` property (`None` unsets it); other
    /// properties are not the registry's.
    pub fn set_property(&self, name: &str, value: Option<&str>) {
        let limit = || {
            value
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(collect::DEFAULT_LIMIT)
        };
        let mut settings = self.settings.write();
        match name {
            COLLECT_LIST_LIMIT => settings.collect_list_limit = limit(),
            COLLECT_SET_LIMIT => settings.collect_set_limit = limit(),
            _ => {}
        }
    }

    pub fn scalar(&self, name: &str) -> Option<&Arc<ScalarUDF>> {
        self.scalars.get(&name.to_uppercase())
    }

    /// An aggregate by its ksqlDB name, configured by the current
    /// settings.
    pub fn aggregate(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        let name = name.to_uppercase();
        let settings = self.settings.read();
        match name.as_str() {
            "COLLECT_LIST" => Some(Arc::new(AggregateUDF::from(collect::Collect::new(
                false,
                settings.collect_list_limit,
            )))),
            "COLLECT_SET" => Some(Arc::new(AggregateUDF::from(collect::Collect::new(
                true,
                settings.collect_set_limit,
            )))),
            _ => self.aggregates.get(&name).cloned(),
        }
    }

    /// For aggregates whose trailing parameters are settings, the index of
    /// the first one (of `count` arguments): they must be literals.
    pub fn literal_parameters(&self, name: &str, count: usize) -> Option<usize> {
        match name.to_uppercase().as_str() {
            // TOPK(col, [other columns...,] k)
            "TOPK" | "TOPKDISTINCT" => Some(count.saturating_sub(1).max(1)),
            "EARLIEST_BY_OFFSET" | "LATEST_BY_OFFSET" => Some(1),
            _ => None,
        }
    }

    pub fn is_aggregate(&self, name: &str) -> bool {
        self.aggregates.contains_key(&name.to_uppercase())
    }

    /// The DataFusion session expressions compile in.
    pub fn session(&self) -> &SessionState {
        &self.session
    }

    /// A DataFusion function by its own name.
    pub fn internal(&self, name: &str) -> Option<&Arc<ScalarUDF>> {
        self.internal.get(name)
    }

    /// Every function name, scalar and aggregate, sorted.
    pub fn names(&self) -> Vec<(String, FunctionKind)> {
        let mut names: Vec<_> = self
            .scalars
            .keys()
            .map(|n| (n.clone(), FunctionKind::Scalar))
            .chain(
                self.aggregates
                    .keys()
                    .map(|n| (n.clone(), FunctionKind::Aggregate)),
            )
            .collect();
        names.sort();
        names
    }
}

/// Registers a row-wise function under its upper-cased name.
fn add_row<K: rowwise::RowKind>(scalars: &mut BTreeMap<String, Arc<ScalarUDF>>, kind: K) {
    let udf = ScalarUDF::from(rowwise::RowUdf::new(kind));
    scalars.insert(udf.name().to_uppercase(), Arc::new(udf));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FunctionKind {
    Scalar,
    Aggregate,
}
