with

raw_events as (

    select * from {{ source('raw', 'raw_events') }}

),

ranked_deliveries as (

    select
        *,
        row_number() over (
            partition by event_id
            order by ingested_at, publish_time, message_id
        ) as delivery_rank

    from raw_events

),

first_deliveries as (

    select * from ranked_deliveries
    where delivery_rank = 1

),

final as (

    select
        cast(event_id as {{ dbt.type_string() }}) as event_id,
        cast(schema_version as {{ dbt.type_int() }}) as schema_version,
        cast(stream_id as {{ dbt.type_string() }}) as stream_id,
        cast(streamer_name as {{ dbt.type_string() }}) as streamer_name,
        cast(
            stream_start_time as {{ dbt.type_timestamp() }}
        ) as stream_start_time,
        cast(viewer_id as {{ dbt.type_string() }}) as viewer_id,
        {{ liveshop.sha256_hex('lower(trim(viewer_email))') }}
            as viewer_email_hash,
        cast(viewer_state as {{ dbt.type_string() }}) as viewer_state,
        cast(device_type as {{ dbt.type_string() }}) as device_type,
        cast(event_time as {{ dbt.type_timestamp() }}) as event_time,
        cast(event_type as {{ dbt.type_string() }}) as event_type,
        cast(product_id as {{ dbt.type_string() }}) as product_id,
        cast(product_name as {{ dbt.type_string() }}) as product_name,
        cast(chat_message as {{ dbt.type_string() }}) as chat_message,
        cast(price as decimal(12, 2)) as price,
        cast(quantity as {{ dbt.type_int() }}) as quantity,
        cast(source as {{ dbt.type_string() }}) as source,
        cast(
            source_session_id as {{ dbt.type_string() }}
        ) as source_session_id,
        extra,
        cast(ingested_at as {{ dbt.type_timestamp() }}) as ingested_at

    from first_deliveries

)

select * from final
