//! VIP fencing: which virtual IPs the agent holds, at which generation.
//!
//! Every heartbeat reply lists the virtual IPs the instance is a member of
//! ([`VipDuty`]: the newest generation the platform knows, and whether this
//! instance holds it at that generation). The rule:
//!
//! * a duty older than the newest generation seen for that VIP is a stale
//!   answer (a lagging replica) and is ignored;
//! * `hold: true` → hold the address at that generation (replacing any
//!   older generation: one VIP is never held at two generations);
//! * `hold: false` → release it if held, at whatever generation;
//! * a held VIP the reply does not list (VIP released, cluster
//!   decommissioned, instance no longer a member) → release it.
//!
//! [`plan`] turns a reply into driver actions (and records the generations
//! seen); the agent runs each action through its runtime driver and
//! [`record`]s the ones that succeeded, so the state says what is really
//! held and the next heartbeat reports exactly that ([`held`]).

use crate::state::VipState;
use powernode_protocol::{HeldVip, VipDuty};
use std::collections::{BTreeMap, BTreeSet};

/// One thing the runtime driver has to do for a virtual IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VipAction {
    /// Put the address on the node, held at `generation`.
    Hold {
        /// Virtual IP id.
        virtual_ip_id: String,
        /// The address.
        vip: String,
        /// The generation it is held at from now on.
        generation: u64,
    },
    /// Take the address off the node.
    Release {
        /// Virtual IP id.
        virtual_ip_id: String,
        /// The address.
        vip: String,
        /// Why.
        why: ReleaseReason,
    },
}

/// Why a held virtual IP is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// The platform's newest generation (`generation`) is not held by this
    /// instance.
    NotHolder {
        /// That generation.
        generation: u64,
    },
    /// The reply no longer lists the virtual IP.
    NotListed,
    /// The virtual IP now has another address; the old one goes.
    Moved,
}

impl std::fmt::Display for VipAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hold {
                vip, generation, ..
            } => write!(f, "holding VIP {vip} at generation {generation}"),
            Self::Release { vip, why, .. } => match why {
                ReleaseReason::NotHolder { generation } => write!(
                    f,
                    "released VIP {vip} (generation {generation} belongs to another holder)"
                ),
                ReleaseReason::NotListed => {
                    write!(f, "released VIP {vip} (no longer listed for this instance)")
                }
                ReleaseReason::Moved => {
                    write!(f, "released VIP {vip} (the virtual IP has a new address)")
                }
            },
        }
    }
}

/// Applies one heartbeat reply's `duties` to `vips`: records the newest
/// generation seen per VIP and returns what the driver must do, in order.
///
/// `applied` names the VIPs this process has itself put on the node. A VIP
/// the state says is held at the confirmed generation but that is not in
/// `applied` (a restart: a fresh driver may have forgotten it) is held
/// again through the driver; one already applied is left alone.
///
/// The held generations are not changed here: [`record`] does that for
/// each action the driver carried out.
pub fn plan(
    vips: &mut BTreeMap<String, VipState>,
    duties: &[VipDuty],
    applied: &BTreeSet<String>,
) -> Vec<VipAction> {
    let mut actions = Vec::new();
    let mut listed = BTreeSet::new();
    for duty in duties {
        let id = &duty.virtual_ip_id;
        listed.insert(id.as_str());
        let entry = vips.entry(id.clone()).or_insert_with(|| VipState {
            vip: duty.vip.clone(),
            ..VipState::default()
        });
        if duty.generation < entry.seen_generation {
            tracing::debug!(
                virtual_ip_id = %id,
                generation = duty.generation,
                seen = entry.seen_generation,
                "ignoring a stale VIP duty"
            );
            continue;
        }
        entry.seen_generation = duty.generation;
        match (duty.hold, entry.held_generation) {
            (true, Some(g))
                if g == duty.generation && entry.vip == duty.vip && applied.contains(id) => {}
            (true, held) => {
                if held.is_some() && entry.vip != duty.vip {
                    actions.push(VipAction::Release {
                        virtual_ip_id: id.clone(),
                        vip: entry.vip.clone(),
                        why: ReleaseReason::Moved,
                    });
                }
                actions.push(VipAction::Hold {
                    virtual_ip_id: id.clone(),
                    vip: duty.vip.clone(),
                    generation: duty.generation,
                });
            }
            (false, Some(_)) => actions.push(VipAction::Release {
                virtual_ip_id: id.clone(),
                vip: entry.vip.clone(),
                why: ReleaseReason::NotHolder {
                    generation: duty.generation,
                },
            }),
            (false, None) => {}
        }
        // The address of a held VIP changes only once the driver has moved it.
        if entry.held_generation.is_none() {
            entry.vip = duty.vip.clone();
        }
    }
    for (id, state) in vips.iter() {
        if state.held_generation.is_some() && !listed.contains(id.as_str()) {
            actions.push(VipAction::Release {
                virtual_ip_id: id.clone(),
                vip: state.vip.clone(),
                why: ReleaseReason::NotListed,
            });
        }
    }
    actions
}

/// Records in `vips` an action the driver carried out.
pub fn record(vips: &mut BTreeMap<String, VipState>, action: &VipAction) {
    match action {
        VipAction::Hold {
            virtual_ip_id,
            vip,
            generation,
        } => {
            let entry = vips.entry(virtual_ip_id.clone()).or_default();
            entry.vip = vip.clone();
            entry.seen_generation = entry.seen_generation.max(*generation);
            entry.held_generation = Some(*generation);
        }
        VipAction::Release {
            virtual_ip_id, vip, ..
        } => {
            if let Some(entry) = vips.get_mut(virtual_ip_id) {
                if entry.vip == *vip {
                    entry.held_generation = None;
                }
            }
        }
    }
}

/// What `vips` says is held, as a heartbeat reports it.
pub fn held(vips: &BTreeMap<String, VipState>) -> Vec<HeldVip> {
    vips.iter()
        .filter_map(|(id, state)| {
            state.held_generation.map(|generation| HeldVip {
                virtual_ip_id: id.clone(),
                vip: state.vip.clone(),
                generation,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duty(id: &str, generation: u64, hold: bool) -> VipDuty {
        VipDuty {
            virtual_ip_id: id.into(),
            vip: format!("fd00::{id}"),
            generation,
            hold,
            network_id: None,
        }
    }

    /// Plans and records every action as if the driver succeeded.
    fn apply(
        vips: &mut BTreeMap<String, VipState>,
        applied: &mut BTreeSet<String>,
        duties: &[VipDuty],
    ) -> Vec<VipAction> {
        let actions = plan(vips, duties, applied);
        for a in &actions {
            record(vips, a);
            match a {
                VipAction::Hold { virtual_ip_id, .. } => applied.insert(virtual_ip_id.clone()),
                VipAction::Release { virtual_ip_id, .. } => applied.remove(virtual_ip_id),
            };
        }
        actions
    }

    fn generations(vips: &BTreeMap<String, VipState>) -> Vec<(String, u64)> {
        held(vips)
            .into_iter()
            .map(|h| (h.virtual_ip_id, h.generation))
            .collect()
    }

    #[test]
    fn holds_keeps_and_moves_up_a_generation_without_holding_two() {
        let (mut vips, mut applied) = (BTreeMap::new(), BTreeSet::new());
        let first = apply(&mut vips, &mut applied, &[duty("a", 1, true)]);
        assert_eq!(first.len(), 1);
        assert!(matches!(first[0], VipAction::Hold { generation: 1, .. }));
        assert!(apply(&mut vips, &mut applied, &[duty("a", 1, true)]).is_empty());
        let up = apply(&mut vips, &mut applied, &[duty("a", 3, true)]);
        assert!(matches!(up[..], [VipAction::Hold { generation: 3, .. }]));
        assert_eq!(generations(&vips), [("a".to_string(), 3)]);
    }

    #[test]
    fn stale_duties_are_ignored_and_newer_ones_for_others_release() {
        let (mut vips, mut applied) = (BTreeMap::new(), BTreeSet::new());
        apply(&mut vips, &mut applied, &[duty("a", 4, true)]);
        // A lagging replica still thinks generation 3 is someone else's.
        assert!(apply(&mut vips, &mut applied, &[duty("a", 3, false)]).is_empty());
        assert_eq!(generations(&vips), [("a".to_string(), 4)]);
        let released = apply(&mut vips, &mut applied, &[duty("a", 5, false)]);
        assert_eq!(
            released,
            [VipAction::Release {
                virtual_ip_id: "a".into(),
                vip: "fd00::a".into(),
                why: ReleaseReason::NotHolder { generation: 5 },
            }]
        );
        assert!(generations(&vips).is_empty());
        // And a stale hold for generation 4 cannot bring it back.
        assert!(apply(&mut vips, &mut applied, &[duty("a", 4, true)]).is_empty());
        assert_eq!(vips["a"].seen_generation, 5);
    }

    #[test]
    fn unlisted_vips_are_released_and_others_kept() {
        let (mut vips, mut applied) = (BTreeMap::new(), BTreeSet::new());
        apply(
            &mut vips,
            &mut applied,
            &[duty("a", 1, true), duty("b", 2, true)],
        );
        let actions = apply(&mut vips, &mut applied, &[duty("b", 2, true)]);
        assert!(matches!(
            &actions[..],
            [VipAction::Release { virtual_ip_id, why: ReleaseReason::NotListed, .. }] if virtual_ip_id == "a"
        ));
        assert_eq!(generations(&vips), [("b".to_string(), 2)]);
    }

    #[test]
    fn a_held_vip_not_applied_by_this_process_is_held_again() {
        let (mut vips, mut applied) = (BTreeMap::new(), BTreeSet::new());
        apply(&mut vips, &mut applied, &[duty("a", 2, true)]);
        let actions = plan(&mut vips, &[duty("a", 2, true)], &BTreeSet::new());
        assert!(matches!(
            actions[..],
            [VipAction::Hold { generation: 2, .. }]
        ));
    }

    #[test]
    fn a_new_address_releases_the_old_one_first() {
        let (mut vips, mut applied) = (BTreeMap::new(), BTreeSet::new());
        apply(&mut vips, &mut applied, &[duty("a", 1, true)]);
        let mut moved = duty("a", 2, true);
        moved.vip = "fd00::b0".into();
        let actions = apply(&mut vips, &mut applied, &[moved]);
        assert!(matches!(
            &actions[..],
            [VipAction::Release { vip: old, why: ReleaseReason::Moved, .. }, VipAction::Hold { vip: new, .. }]
                if old == "fd00::a" && new == "fd00::b0"
        ));
        assert_eq!(held(&vips)[0].vip, "fd00::b0");
    }

    #[test]
    fn log_lines_say_what_happened() {
        let hold = VipAction::Hold {
            virtual_ip_id: "a".into(),
            vip: "fd00::1".into(),
            generation: 7,
        };
        assert_eq!(hold.to_string(), "holding VIP fd00::1 at generation 7");
        let release = VipAction::Release {
            virtual_ip_id: "a".into(),
            vip: "fd00::1".into(),
            why: ReleaseReason::NotHolder { generation: 8 },
        };
        assert_eq!(
            release.to_string(),
            "released VIP fd00::1 (generation 8 belongs to another holder)"
        );
    }
}
