with

sessionized_events as (

    select * from {{ ref('int_sessionized_events') }}

),

orders as (

    select * from sessionized_events
    where event_type = 'order_completed'

),

final as (

    select
        event_id as order_id,
        session_id,
        stream_id,
        viewer_id,
        viewer_state,
        device_type,
        product_id,
        product_name,
        price,
        quantity,
        cast(price * quantity as decimal(18, 2)) as revenue,
        event_time as ordered_at

    from orders

)

select * from final
