with

sessionized_events as (

    select * from {{ ref('int_sessionized_events') }}

),

sessions as (

    select * from {{ ref('fct_sessions') }}

),

latest_states as (

    select
        viewer_id,
        viewer_state,
        row_number() over (
            partition by viewer_id
            order by event_time desc, event_id desc
        ) as recency_rank

    from sessionized_events

),

latest_email_hashes as (

    select
        viewer_id,
        viewer_email_hash,
        row_number() over (
            partition by viewer_id
            order by event_time desc, event_id desc
        ) as recency_rank

    from sessionized_events
    where viewer_email_hash is not null

),

viewer_activity as (

    select
        viewer_id,
        min(started_at) as first_seen_at,
        max(ended_at) as last_seen_at,
        count(*) as sessions,
        sum(orders) as orders,
        sum(revenue) as revenue

    from sessions
    group by viewer_id

),

final as (

    select
        viewer_activity.viewer_id,
        latest_email_hashes.viewer_email_hash,
        latest_states.viewer_state,
        viewer_activity.first_seen_at,
        viewer_activity.last_seen_at,
        viewer_activity.sessions,
        cast(viewer_activity.orders as {{ dbt.type_bigint() }}) as orders,
        cast(viewer_activity.revenue as decimal(18, 2)) as revenue

    from viewer_activity
    inner join latest_states
        on
            viewer_activity.viewer_id = latest_states.viewer_id
            and latest_states.recency_rank = 1
    left join latest_email_hashes
        on
            viewer_activity.viewer_id = latest_email_hashes.viewer_id
            and latest_email_hashes.recency_rank = 1

)

select * from final
