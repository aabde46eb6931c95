//! [`GroupStates`]: the accumulators of many groups of one aggregation,
//! fed a batch at a time.
//!
//! Aggregates DataFusion can run vectorised (`COUNT`, `SUM`, `AVG`, `MIN`,
//! `MAX` and most other built-ins) keep every group's state in one
//! [`GroupsAccumulator`]: a batch updates all its groups in one call, with
//! no per-row dispatch. The others (most ksqlDB UDAFs) keep one row
//! [`Accumulator`] per group, fed row by row as before.
//!
//! A streaming aggregate must read a group's current value without ending
//! the group, and DataFusion's `GroupsAccumulator::evaluate` resets what it
//! evaluates. So reading takes the intermediate state of every group, puts
//! it back into a fresh accumulator, and evaluates the wanted groups from a
//! copy of their state: a few vectorised passes over the groups, once per
//! flush rather than once per record.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt32Array, new_empty_array};
use datafusion::arrow::compute::take;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::{EngineError, Result};

/// One aggregate's state for every group.
enum Groups {
    Vectorized(Box<dyn GroupsAccumulator>),
    PerGroup(Vec<Box<dyn Accumulator>>),
}

/// The state of every aggregate of a query for a set of groups numbered
/// `0..len()` ("slots").
pub struct GroupStates {
    aggregates: Arc<[Arc<AggregateFunctionExpr>]>,
    groups: Vec<Groups>,
    len: usize,
}

/// `0..n`, the group indices of states read back in slot order.
fn identity(n: usize) -> Vec<usize> {
    (0..n).collect()
}

fn is_identity(slots: &[usize], len: usize) -> bool {
    slots.len() == len && slots.iter().enumerate().all(|(i, s)| i == *s)
}

fn indices(slots: &[usize]) -> Result<UInt32Array> {
    slots
        .iter()
        .map(|s| {
            u32::try_from(*s)
                .map_err(|_| EngineError::Execution("more than 2^32 groups in one window".into()))
        })
        .collect::<Result<Vec<u32>>>()
        .map(UInt32Array::from)
}

fn take_all(arrays: &[ArrayRef], rows: &UInt32Array) -> Result<Vec<ArrayRef>> {
    Ok(arrays
        .iter()
        .map(|a| take(a.as_ref(), rows, None))
        .collect::<Result<Vec<_>, _>>()?)
}

impl GroupStates {
    pub fn new(aggregates: Arc<[Arc<AggregateFunctionExpr>]>) -> Result<Self> {
        let groups = aggregates
            .iter()
            .map(|a| {
                Ok(if a.groups_accumulator_supported() {
                    Groups::Vectorized(a.create_groups_accumulator()?)
                } else {
                    Groups::PerGroup(Vec::new())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GroupStates {
            aggregates,
            groups,
            len: 0,
        })
    }

    /// Groups held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A new, empty group; returns its slot.
    pub fn add_group(&mut self) -> Result<usize> {
        for (groups, aggregate) in self.groups.iter_mut().zip(self.aggregates.iter()) {
            if let Groups::PerGroup(accumulators) = groups {
                accumulators.push(aggregate.create_accumulator()?);
            }
        }
        self.len += 1;
        Ok(self.len - 1)
    }

    /// Adds input rows: `args[i]` are aggregate `i`'s evaluated arguments,
    /// one row per entry of `slots`, the group each row belongs to.
    pub fn update(&mut self, args: &[Vec<ArrayRef>], slots: &[usize]) -> Result<()> {
        for (groups, args) in self.groups.iter_mut().zip(args) {
            match groups {
                Groups::Vectorized(acc) => acc.update_batch(args, slots, None, self.len)?,
                Groups::PerGroup(accumulators) => {
                    for (row, slot) in slots.iter().enumerate() {
                        let acc = accumulators.get_mut(*slot).ok_or_else(|| {
                            EngineError::Execution(format!("no aggregate group {slot}"))
                        })?;
                        let slices: Vec<ArrayRef> = args.iter().map(|a| a.slice(row, 1)).collect();
                        acc.update_batch(&slices)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The current value of each aggregate for `slots`, one array per
    /// aggregate with a row per slot; the groups keep their state.
    pub fn values(&mut self, slots: &[usize]) -> Result<Vec<ArrayRef>> {
        let len = self.len;
        let mut out = Vec::with_capacity(self.groups.len());
        for (groups, aggregate) in self.groups.iter_mut().zip(self.aggregates.iter()) {
            if slots.is_empty() {
                out.push(new_empty_array(aggregate.field().data_type()));
                continue;
            }
            out.push(match groups {
                Groups::Vectorized(acc) => {
                    let state = read_state(acc, aggregate, len)?;
                    let held = state.first().map_or(0, |a| a.len());
                    if slots.iter().any(|s| *s >= held) {
                        return Err(EngineError::Execution(format!(
                            "aggregate {} holds {held} groups, fewer than asked for",
                            aggregate.name()
                        )));
                    }
                    let picked = if is_identity(slots, len) {
                        state
                    } else {
                        take_all(&state, &indices(slots)?)?
                    };
                    let mut copy = aggregate.create_groups_accumulator()?;
                    copy.merge_batch(&picked, &identity(slots.len()), slots.len())?;
                    copy.evaluate(EmitTo::All)?
                }
                Groups::PerGroup(accumulators) => {
                    let values = slots
                        .iter()
                        .map(|slot| {
                            accumulators
                                .get_mut(*slot)
                                .ok_or_else(|| {
                                    EngineError::Execution(format!("no aggregate group {slot}"))
                                })?
                                .evaluate()
                                .map_err(EngineError::from)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    ScalarValue::iter_to_array(values)?
                }
            });
        }
        Ok(out)
    }

    /// Every group's intermediate state: per aggregate, per state field,
    /// an array with a row per slot. The groups keep their state.
    pub fn states(&mut self) -> Result<Vec<Vec<ArrayRef>>> {
        let len = self.len;
        let mut out = Vec::with_capacity(self.groups.len());
        for (groups, aggregate) in self.groups.iter_mut().zip(self.aggregates.iter()) {
            out.push(match groups {
                Groups::Vectorized(acc) => read_state(acc, aggregate, len)?,
                Groups::PerGroup(accumulators) => {
                    let fields = aggregate.state_fields()?;
                    let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::new(); fields.len()];
                    for acc in accumulators.iter_mut() {
                        for (value, column) in acc.state()?.into_iter().zip(columns.iter_mut()) {
                            column.push(value);
                        }
                    }
                    columns
                        .into_iter()
                        .zip(fields.iter())
                        .map(|(values, field)| super::state::scalars(values, field.data_type()))
                        .collect::<Result<Vec<_>>>()?
                }
            });
        }
        Ok(out)
    }

    /// Merges intermediate states (as [`Self::states`] returns, one row
    /// per entry of `slots`) into the groups `slots`, as restoring does.
    pub fn merge_states(&mut self, states: &[Vec<ArrayRef>], slots: &[usize]) -> Result<()> {
        if states.len() != self.groups.len() {
            return Err(EngineError::Checkpoint(format!(
                "state holds {} aggregates, the query has {}",
                states.len(),
                self.groups.len()
            )));
        }
        for ((groups, aggregate), fields) in self
            .groups
            .iter_mut()
            .zip(self.aggregates.iter())
            .zip(states)
        {
            // Merging a state of the wrong shape could panic inside the
            // accumulator: check it against what the aggregate declares.
            let expected = aggregate.state_fields()?;
            if expected.len() != fields.len()
                || expected
                    .iter()
                    .zip(fields)
                    .any(|(f, a)| f.data_type() != a.data_type() || a.len() != slots.len())
            {
                return Err(EngineError::Checkpoint(format!(
                    "the state of aggregate {} does not match the query",
                    aggregate.name()
                )));
            }
            match groups {
                Groups::Vectorized(acc) => acc.merge_batch(fields, slots, self.len)?,
                Groups::PerGroup(accumulators) => {
                    for (row, slot) in slots.iter().enumerate() {
                        let acc = accumulators.get_mut(*slot).ok_or_else(|| {
                            EngineError::Checkpoint(format!("no aggregate group {slot}"))
                        })?;
                        let slices: Vec<ArrayRef> =
                            fields.iter().map(|a| a.slice(row, 1)).collect();
                        acc.merge_batch(&slices)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Every group's state of a vectorised accumulator, leaving the
/// accumulator as it was (`state` resets it, so the state goes back into
/// a fresh one).
fn read_state(
    acc: &mut Box<dyn GroupsAccumulator>,
    aggregate: &AggregateFunctionExpr,
    len: usize,
) -> Result<Vec<ArrayRef>> {
    let state = acc.state(EmitTo::All)?;
    let held = state.first().map_or(0, |a| a.len());
    let mut fresh = aggregate.create_groups_accumulator()?;
    if held > 0 {
        fresh.merge_batch(&state, &identity(held), held.max(len))?;
    }
    *acc = fresh;
    Ok(state)
}
