//! End-to-end tests against a real kube-apiserver and etcd on loopback.
//!
//! One control plane serves the whole run (starting one costs seconds), so this is a
//! single test binary with its own `main` (libtest-mimic prints cargo test's usual
//! summary): it owns the control plane's start, on first use, and its stop, after the
//! last test or on Ctrl-C.

mod admission;
mod api_faults;
mod argocd;
mod chaos;
mod conditions;
mod controller;
mod crd;
mod deletion;
mod env_from;
mod exactly_once;
mod fixture;
mod infra;
mod job_semantics;
mod leader;
mod namespaced_rbac;
mod observability;
mod platform_credentials;
mod proxy;
mod secrets;
mod shards;
mod startup;
mod tenant_rbac;
mod world;

use std::process::ExitCode;

use libtest_mimic::{Arguments, Trial};

/// Declares trials from `fn name() -> Result<(), Failed>` items, named after them.
macro_rules! trials {
    ($($module:ident :: $test:ident),* $(,)?) => {
        vec![$(Trial::test(concat!(stringify!($module), "::", stringify!($test)), $module::$test)),*]
    };
}

fn main() -> ExitCode {
    let arguments = Arguments::from_args();
    dataforest_operator::install_crypto_provider();
    // Ctrl-C: stop etcd and kube-apiserver (and delete their folder) before leaving.
    let _ = ctrlc_shutdown();
    let trials = trials![
        admission::invalid_aiapps_are_refused_at_admission_naming_the_field,
        admission::a_minimal_aiapp_gets_its_defaults_from_the_apiserver,
        admission::each_submitted_field_is_immutable_and_the_error_says_to_recreate,
        admission::credentials_deletion_policy_suspend_and_deadlines_stay_mutable,
        crd::the_generated_crd_is_accepted_and_established,
        crd::an_aiapp_can_be_created_read_back_and_given_a_status,
        crd::kubectl_shows_the_printer_columns_and_short_name,
        crd::kubectl_explain_says_what_each_phase_means,
        conditions::kubectl_wait_for_finished_ends_whichever_way_the_app_ends,
        conditions::a_running_app_is_reconciling_and_one_without_credentials_is_stalled,
        chaos::every_aiapp_gets_exactly_one_app_under_random_faults,
        chaos::the_promise_holds_through_crashes_restarts_pauses_and_faults,
        deletion::a_kill_accepted_while_the_app_stays_live_holds_the_aiapp_until_the_app_ends,
        deletion::a_kill_that_has_not_taken_effect_is_sent_again_after_30_seconds,
        deletion::past_the_deletion_bound_the_aiapp_is_released_with_kill_timed_out_naming_the_live_app,
        deletion::an_operator_restarted_after_the_secret_went_releases_with_kill_skipped_and_leaves_the_app_running,
        deletion::deleting_an_aiapp_while_its_submit_is_in_flight_kills_the_app_the_submit_made,
        deletion::deleting_an_aiapp_whose_submit_answer_is_lost_finds_and_kills_its_app,
        deletion::deleting_a_paused_running_aiapp_still_kills_its_app,
        deletion::deleting_a_paused_never_submitted_aiapp_releases_it_without_an_api_call,
        deletion::deleting_the_namespace_kills_its_running_app_and_the_namespace_goes,
        api_faults::an_html_page_on_a_read_is_retried_and_never_parks_the_aiapp,
        api_faults::a_gateway_clock_far_off_is_named_clock_skew_and_retried,
        api_faults::a_redirect_is_never_followed_and_its_target_receives_nothing,
        api_faults::an_id_whose_status_write_is_refused_is_kept_and_written_later,
        controller::an_aiapp_runs_to_succeeded_with_its_status_filled_in,
        controller::a_failing_app_ends_failed,
        controller::polls_of_a_running_app_that_did_not_change_write_nothing,
        controller::running_apps_of_one_account_polled_often_share_one_listing_a_second,
        controller::while_the_listing_serves_polls_a_deadline_and_a_suspend_still_kill_their_apps,
        job_semantics::suspended_before_submit_nothing_is_submitted_and_resuming_submits_once,
        job_semantics::suspending_a_running_app_kills_it_and_resuming_submits_a_new_attempt,
        job_semantics::a_suspend_while_submitting_finds_the_app_first_then_kills_it,
        job_semantics::a_start_deadline_says_deadline_exceeded_at_once_and_fails_once_a_late_kill_took,
        job_semantics::an_active_deadline_counts_from_status_across_an_operator_restart,
        job_semantics::an_app_with_deadlines_far_ahead_is_followed_to_its_end_on_the_poll_schedule,
        job_semantics::a_failing_app_is_retried_up_to_the_limit_with_one_app_per_attempt,
        job_semantics::an_app_killed_by_a_person_is_not_retried,
        controller::a_running_operator_counts_its_work_on_metrics,
        controller::deleting_an_aiapp_with_kill_kills_its_running_app,
        controller::deleting_an_aiapp_with_orphan_leaves_its_app_running,
        controller::deleting_an_aiapp_after_its_secret_is_gone_still_kills_the_app,
        controller::an_aiapp_waits_for_its_missing_secret_and_submits_once_it_exists,
        controller::wrong_credentials_park_the_aiapp_until_its_secret_is_fixed,
        controller::throttling_and_server_errors_are_retried_and_the_app_still_succeeds,
        controller::a_lost_submit_response_never_produces_a_second_app,
        controller::a_server_error_after_the_app_was_created_never_produces_a_second_app,
        controller::with_a_listing_lag_the_grace_period_prevents_a_duplicate,
        controller::a_paused_aiapp_makes_no_api_calls,
        controller::two_aiapps_sharing_a_prefix_whose_answers_are_lost_wait_for_a_person_and_adopt_id_resolves_them,
        controller::an_operator_killed_in_the_middle_of_50_submissions_and_restarted_leaves_exactly_50_apps,
        controller::two_operators_during_a_rolling_update_submit_each_aiapp_once,
        controller::an_operator_watching_a_list_of_namespaces_leaves_other_namespaces_alone,
        shards::two_shards_split_the_namespaces_and_each_aiapp_is_handled_by_one,
        controller::a_malformed_adopt_id_is_refused_and_nothing_is_submitted,
        controller::an_adopted_id_that_data_forest_does_not_know_ends_unknown_after_the_grace_period,
        startup::an_operator_started_before_its_crd_is_alive_not_ready_and_then_ready,
        exactly_once::resubmits_after_nothing_is_listed_stop_after_one_and_name_every_app,
        exactly_once::a_resubmit_confirmation_is_used_once_and_never_confirms_a_later_attempt,
        exactly_once::a_status_write_from_a_stale_copy_is_refused_and_the_id_stays,
        exactly_once::an_aiapp_re_created_under_the_same_name_inherits_nothing,
        exactly_once::a_refused_key_parks_every_aiapp_of_that_key_after_one_call,
        exactly_once::fifty_lost_answers_cost_at_most_one_get_list_a_second,
        exactly_once::under_throttling_calls_stay_within_the_key_budget_and_every_app_succeeds,
        exactly_once::aiapps_left_by_the_previous_version_keep_working,
        exactly_once::deleting_an_aiapp_in_unknown_kills_the_candidates_that_are_certainly_its_own,
        exactly_once::a_leader_stopped_between_marker_and_answer_leaves_one_app,
        exactly_once::an_app_under_the_current_attempts_own_prefix_is_adopted_with_an_earlier_attempt_open,
        leader::only_one_of_two_candidates_leads,
        leader::a_released_lease_is_taken_over_by_the_other_candidate,
        leader::a_leader_whose_lease_is_taken_learns_it_lost,
        leader::a_dead_holders_lease_is_taken_a_lease_duration_after_it_was_first_seen,
        leader::a_leader_that_cannot_renew_loses_when_its_lease_runs_out,
        infra::an_exclusive_test_stops_and_restarts_the_apiserver_and_keeps_its_data,
        infra::an_exclusive_test_that_fails_or_panics_with_the_apiserver_stopped_leaves_it_running,
        infra::a_write_through_the_proxy_lands_while_its_answer_is_held_until_release,
        infra::status_writes_are_refused_naming_the_policy_until_allowed_or_dropped,
        infra::an_operator_process_behind_the_proxy_leads_runs_an_aiapp_and_logs_as_asked,
        infra::a_paused_operator_loses_its_lease_to_a_running_one_and_resumes,
        secrets::an_endpoint_off_the_allow_list_or_malformed_names_the_secret_and_key_and_shows_no_value,
        secrets::a_missing_or_non_utf8_key_names_the_secret_and_key_and_shows_no_value,
        secrets::a_running_app_shows_no_secret_value_but_the_access_key_id_at_trace_level,
    ];
    // Platform credentials: the default Secret, its watch, the chart's admission policy.
    let platform_credentials = trials![
        platform_credentials::the_default_secret_runs_aiapps_of_listed_namespaces_only_on_the_platform_account,
        platform_credentials::fixing_the_default_secret_wakes_the_aiapps_that_use_it,
        platform_credentials::the_charts_policy_refuses_creating_aiapps_without_credentials_where_no_default_serves,
    ];
    let trials: Vec<Trial> = trials.into_iter().chain(platform_credentials).collect();
    // envFrom: env values from Secrets.
    let env_from_trials = trials![
        env_from::env_from_a_secret_reaches_the_stored_app_and_its_values_nowhere_else,
        env_from::a_missing_secret_or_key_waits_naming_them_and_submits_once_when_fixed,
        env_from::a_malformed_env_from_entry_is_refused_by_kubectl_apply_naming_the_field,
    ];
    let trials: Vec<Trial> = trials.into_iter().chain(env_from_trials).collect();
    // Tenant RBAC: the chart's roles aggregated into admin, edit and view.
    let tenant_rbac_trials = trials![
        tenant_rbac::users_bound_to_edit_or_view_get_aiapp_rights_from_the_charts_aggregated_roles,
    ];
    let trials: Vec<Trial> = trials.into_iter().chain(tenant_rbac_trials).collect();
    // Argo CD: the health check's and actions' test objects are what the operator writes.
    let argocd_trials = trials![
        argocd::the_health_testdata_is_the_status_the_operator_writes_and_suspend_and_resume_work,
        argocd::an_unknown_aiapp_is_captured_and_the_resubmit_action_submits_once,
        argocd::refused_keys_are_captured_before_and_after_the_submit,
    ];
    let trials: Vec<Trial> = trials.into_iter().chain(argocd_trials).collect();
    // Observability: the real binary's metrics, and the names the alerts and dashboard use.
    let observability_trials = trials![
        observability::only_the_leader_exports_aiapp_counts_and_the_leader_gauge_follows_a_handover,
        observability::every_metric_the_alerts_and_the_dashboard_use_is_exported_by_the_operator,
        observability::the_operators_writes_carry_its_name_in_managed_fields,
        observability::every_event_is_also_a_log_line_at_its_level,
    ];
    let trials: Vec<Trial> = trials.into_iter().chain(observability_trials).collect();
    // The chart's RBAC for several namespaces, on the real binary.
    let namespaced_rbac_trials = trials![
        namespaced_rbac::an_operator_with_the_charts_rbac_for_two_namespaces_runs_aiapps_there_and_leaves_a_third_alone,
    ];
    let trials: Vec<Trial> = trials.into_iter().chain(namespaced_rbac_trials).collect();
    let conclusion = libtest_mimic::run(&arguments, trials);
    fixture::shutdown();
    conclusion.exit_code()
}

fn ctrlc_shutdown() -> Result<(), ctrlc::Error> {
    ctrlc::set_handler(|| {
        fixture::shutdown();
        std::process::exit(130);
    })
}
