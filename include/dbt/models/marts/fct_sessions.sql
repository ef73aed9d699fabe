{%- set session_timeout_seconds = var('session_timeout_minutes') * 60 -%}

with

sessionized_events as (

    select * from {{ ref('int_sessionized_events') }}

),

ordered_events as (

    select
        *,
        row_number() over (
            partition by session_id
            order by event_time desc, event_id desc
        ) as reverse_event_number

    from sessionized_events

),

session_openers as (

    select
        session_id,
        streamer_name,
        viewer_email_hash,
        viewer_state,
        device_type

    from ordered_events
    where is_session_start

),

session_closers as (

    select
        session_id,
        event_type = 'stream_exit' as has_exited

    from ordered_events
    where reverse_event_number = 1

),

session_activity as (

    select
        session_id,
        stream_id,
        viewer_id,
        session_number,
        min(event_time) as started_at,
        max(event_time) as ended_at,
        count(*) as event_count,
        count(
            case when event_type = 'product_view' then 1 end
        ) as product_views,
        count(
            case when event_type = 'chat_message' then 1 end
        ) as chat_messages,
        count(
            case when event_type = 'add_to_cart' then 1 end
        ) as add_to_carts,
        count(
            case when event_type = 'checkout_started' then 1 end
        ) as checkouts,
        count(
            case when event_type = 'order_completed' then 1 end
        ) as orders,
        coalesce(sum(
            case
                when event_type = 'order_completed' then price * quantity
            end
        ), 0) as revenue

    from sessionized_events
    group by session_id, stream_id, viewer_id, session_number

),

latest_event as (

    select max(event_time) as last_event_at
    from sessionized_events

),

final as (

    select
        session_activity.session_id,
        session_activity.stream_id,
        session_openers.streamer_name,
        session_activity.viewer_id,
        session_openers.viewer_email_hash,
        session_openers.viewer_state,
        session_openers.device_type,
        session_activity.session_number,
        session_activity.started_at,
        session_activity.ended_at,
        {{ liveshop.timestamp_diff_seconds(
            'session_activity.started_at', 'session_activity.ended_at'
        ) }} as duration_seconds,
        session_activity.event_count,
        session_activity.product_views,
        session_activity.chat_messages,
        session_activity.add_to_carts,
        session_activity.checkouts,
        session_activity.orders,
        cast(session_activity.revenue as decimal(18, 2)) as revenue,
        session_activity.orders > 0 as is_converted,
        session_closers.has_exited,
        (
            not session_closers.has_exited
            and {{ liveshop.timestamp_diff_seconds(
                'session_activity.ended_at', 'latest_event.last_event_at'
            ) }} <= {{ session_timeout_seconds }}
        ) as is_open

    from session_activity
    inner join session_openers
        on session_activity.session_id = session_openers.session_id
    inner join session_closers
        on session_activity.session_id = session_closers.session_id
    cross join latest_event

)

select * from final
