{#-
    Point-in-time features: only events strictly earlier (in event_time) than
    the session's first order_completed count, so the label cannot leak into
    the features. Sessions without an order use all their events.
-#}

with

sessionized_events as (

    select * from {{ ref('int_sessionized_events') }}

),

sessions as (

    select * from {{ ref('fct_sessions') }}

),

first_orders as (

    select
        session_id,
        min(event_time) as first_ordered_at

    from sessionized_events
    where event_type = 'order_completed'
    group by session_id

),

pre_order_events as (

    select sessionized_events.*

    from sessionized_events
    left join first_orders
        on sessionized_events.session_id = first_orders.session_id
    where
        first_orders.first_ordered_at is null
        or sessionized_events.event_time < first_orders.first_ordered_at

),

pre_order_activity as (

    select
        session_id,
        count(
            case when event_type = 'product_view' then 1 end
        ) as pit_product_views,
        count(
            case when event_type = 'chat_message' then 1 end
        ) as pit_chat_messages,
        count(
            case when event_type = 'add_to_cart' then 1 end
        ) as pit_add_to_carts,
        count(
            case when event_type = 'checkout_started' then 1 end
        ) as pit_checkouts,
        count(distinct product_id) as pit_distinct_products,
        max(event_time) as last_pre_order_event_at

    from pre_order_events
    group by session_id

),

final as (

    select
        sessions.session_id,
        sessions.device_type,
        sessions.viewer_state,
        coalesce(pre_order_activity.pit_product_views, 0)
            as pit_product_views,
        coalesce(pre_order_activity.pit_chat_messages, 0)
            as pit_chat_messages,
        coalesce(pre_order_activity.pit_add_to_carts, 0)
            as pit_add_to_carts,
        coalesce(pre_order_activity.pit_checkouts, 0) as pit_checkouts,
        coalesce(pre_order_activity.pit_distinct_products, 0)
            as pit_distinct_products,
        coalesce(
            {{ liveshop.timestamp_diff_seconds(
                'sessions.started_at',
                'pre_order_activity.last_pre_order_event_at'
            ) }},
            0
        ) as pit_seconds_active,
        sessions.is_converted,
        -- A session that opens with its order has no earlier event: its
        -- features are observed at the start, all zero.
        coalesce(
            pre_order_activity.last_pre_order_event_at, sessions.started_at
        ) as observed_at

    from sessions
    left join pre_order_activity
        on sessions.session_id = pre_order_activity.session_id

)

select * from final
