{#-
    One row per stream and minute from the stream's first to its last event,
    zero-filled, so charts show the quiet minutes too.
-#}

with

sessions as (

    select * from {{ ref('fct_sessions') }}

),

streams as (

    select * from {{ ref('dim_streams') }}

),

stream_minutes as (

    select
        streams.stream_id,
        minute_at

    from streams
    {{ liveshop.minute_series(
        dbt.date_trunc('minute', 'streams.first_event_at'),
        'streams.last_event_at',
        'minute_at'
    ) }}

),

session_minutes as (

    select
        sessions.stream_id,
        sessions.viewer_id,
        minute_at

    from sessions
    {{ liveshop.minute_series(
        dbt.date_trunc('minute', 'sessions.started_at'),
        'sessions.ended_at',
        'minute_at'
    ) }}

),

viewers_by_minute as (

    select
        stream_id,
        minute_at,
        count(distinct viewer_id) as viewers

    from session_minutes
    group by stream_id, minute_at

),

final as (

    select
        stream_minutes.stream_id,
        stream_minutes.minute_at,
        coalesce(viewers_by_minute.viewers, 0) as viewers

    from stream_minutes
    left join viewers_by_minute
        on
            stream_minutes.stream_id = viewers_by_minute.stream_id
            and stream_minutes.minute_at = viewers_by_minute.minute_at

)

select * from final
