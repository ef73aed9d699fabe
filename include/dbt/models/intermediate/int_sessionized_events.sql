{#- The session rules are documented in the `session_definition` docs block. -#}
{%- set session_timeout_seconds = var('session_timeout_minutes') * 60 -%}

with

events as (

    select * from {{ ref('stg_liveshop__events') }}

),

with_previous_event as (

    select
        *,
        lag(event_time) over viewer_in_stream as previous_event_time,
        lag(event_type) over viewer_in_stream as previous_event_type

    from events
    window viewer_in_stream as (
        partition by stream_id, viewer_id
        order by event_time, event_id
    )

),

flagged_session_starts as (

    select
        *,
        {{ liveshop.timestamp_diff_seconds(
            'previous_event_time', 'event_time'
        ) }} as seconds_since_previous_event,
        case
            when previous_event_time is null then true
            when previous_event_type = 'stream_exit' then true
            when {{ liveshop.timestamp_diff_seconds(
                'previous_event_time', 'event_time'
            ) }} > {{ session_timeout_seconds }} then true
            else false
        end as is_session_start

    from with_previous_event

),

numbered_sessions as (

    select
        *,
        sum(case when is_session_start then 1 else 0 end) over (
            partition by stream_id, viewer_id
            order by event_time, event_id
            rows between unbounded preceding and current row
        ) as session_number

    from flagged_session_starts

),

final as (

    select
        {{ dbt.hash(
            "stream_id || '|' || viewer_id || '|' || "
            ~ "cast(session_number as " ~ dbt.type_string() ~ ")"
        ) }} as session_id,
        cast(session_number as {{ dbt.type_int() }}) as session_number,
        is_session_start,
        seconds_since_previous_event,
        event_id,
        stream_id,
        streamer_name,
        stream_start_time,
        viewer_id,
        viewer_email_hash,
        viewer_state,
        device_type,
        event_time,
        event_type,
        product_id,
        product_name,
        chat_message,
        price,
        quantity,
        source,
        source_session_id,
        ingested_at

    from numbered_sessions

)

select * from final
