with

sessionized_events as (

    select * from {{ ref('int_sessionized_events') }}

),

sessions as (

    select * from {{ ref('fct_sessions') }}

),

stream_events as (

    select
        stream_id,
        -- A stream keeps one streamer and start time; max() picks the
        -- value deterministically should a producer ever disagree.
        max(streamer_name) as streamer_name,
        min(stream_start_time) as stream_start_time,
        min(event_time) as first_event_at,
        max(event_time) as last_event_at,
        count(distinct viewer_id) as viewers

    from sessionized_events
    group by stream_id

),

stream_sessions as (

    select
        stream_id,
        count(*) as sessions,
        sum(orders) as orders,
        count(distinct case when is_converted then viewer_id end) as buyers,
        sum(revenue) as revenue

    from sessions
    group by stream_id

),

final as (

    select
        stream_events.stream_id,
        stream_events.streamer_name,
        stream_events.stream_start_time,
        stream_events.first_event_at,
        stream_events.last_event_at,
        stream_events.viewers,
        stream_sessions.sessions,
        cast(stream_sessions.orders as {{ dbt.type_bigint() }}) as orders,
        stream_sessions.buyers,
        cast(stream_sessions.revenue as decimal(18, 2)) as revenue

    from stream_events
    inner join stream_sessions
        on stream_events.stream_id = stream_sessions.stream_id

)

select * from final
